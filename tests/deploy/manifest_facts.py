#!/usr/bin/env python3
"""Static half of tests/deploy/check-manifests.sh: reads one `kustomize build` output,
checks what can be checked without the binaries, and prints one JSON line per workload
container with the facts the shell script needs to run its binary.

Checks (each failure is a line in the container's "errors", or in a "manifest" record):
  probes      liveness httpGet /health/live, readiness httpGet /health/ready, both on the
              container port the service listens on: METRICS_PORT from the environment,
              else the binary's default (--help, or the contract's table when there is no
              binary); the Service and the ServiceMonitor reach that port
  security    non-root (uid/gid >= 10000), read-only root filesystem, no privilege
              escalation, all capabilities dropped, seccomp RuntimeDefault, no service
              account token, an existing service account, terminationGracePeriodSeconds 30
  resources   cpu and memory requests and limits
  disruption  a PodDisruptionBudget and a NetworkPolicy select every workload's pods
  chains      a StatefulSet with INSTANCE_ID from the pod name, its governing Service
              headless, no static replicas, one KEDA ScaledObject on it whose consumer
              group and topic are the service's own and whose bootstrapServersFromEnv
              is in the container's environment
  config      a --config file is a key of a ConfigMap mounted at that path
  secrets     with SASL on, every container takes KAFKA_PROP_SASL_PASSWORD from a Secret;
              no literal value for a variable named like a secret
  airflow     the tributary-airflow ConfigMap names the workloads' image, their namespace,
              their lake and Kafka settings, and an existing service account

Usage: manifest_facts.py BUILD.yaml DEFAULTS_JSON
DEFAULTS_JSON: {"<binary>": <default metrics port>} from the binaries' --help or the table.
"""

import json
import re
import sys

import yaml  # python3-yaml

CHAINS = ("users", "unsubscribes", "blocklists", "subscriptions", "mailings")
SECRETISH = re.compile(r"PASSWORD|SECRET|TOKEN|CREDENTIAL|_KEY$")


def load(path):
    return [d for d in yaml.safe_load_all(open(path, encoding="utf-8")) if d]


def selects(selector, labels):
    sel = (selector or {}).get("matchLabels", selector or {})
    if not isinstance(sel, dict) or not sel:
        return False
    return all(labels.get(k) == v for k, v in sel.items() if isinstance(v, str))


def main():
    docs = load(sys.argv[1])
    defaults = json.loads(sys.argv[2])
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    configmaps = {d["metadata"]["name"]: d.get("data", {}) for d in by_kind.get("ConfigMap", [])}
    accounts = {d["metadata"]["name"] for d in by_kind.get("ServiceAccount", [])}
    services = by_kind.get("Service", [])
    manifest_errors = []
    env_cm = next((v for k, v in configmaps.items() if k.startswith("tributary-env")), {})
    sasl = env_cm.get("KAFKA_PROP_SECURITY_PROTOCOL", "").upper().startswith("SASL")
    images = set()

    for w in by_kind.get("StatefulSet", []) + by_kind.get("Deployment", []):
        kind, name = w["kind"], w["metadata"]["name"]
        spec = w["spec"]
        pod = spec["template"]["spec"]
        labels = spec["template"]["metadata"].get("labels", {})
        psc = pod.get("securityContext", {})
        for c in pod["containers"]:
            errors = []
            err = errors.append
            images.add(c.get("image"))
            cmd = c.get("command") or []
            args = list(cmd[1:]) + list(c.get("args") or [])
            binary = cmd[0] if cmd else None
            if not binary or "/" in binary:
                err(f"command should be the bare binary name (on PATH in the image), got {cmd}")
            # --- environment, resolved
            env, env_from_secret = {}, set()
            for ef in c.get("envFrom", []):
                if "configMapRef" in ef:
                    ref = ef["configMapRef"]["name"]
                    if ref not in configmaps:
                        err(f"envFrom ConfigMap {ref} is not in the build")
                    for k, v in configmaps.get(ref, {}).items():
                        env[k] = v
                elif "secretRef" in ef:
                    err("envFrom secretRef hides the variable names from this check: use env[].valueFrom.secretKeyRef")
            for e in c.get("env", []):
                if "value" in e:
                    env[e["name"]] = e["value"]
                    if SECRETISH.search(e["name"]) and e["value"]:
                        err(f"{e['name']} has a literal value: take it from a Secret")
                elif "valueFrom" in e:
                    vf = e["valueFrom"]
                    if "secretKeyRef" in vf:
                        env[e["name"]] = "secret-value"
                        env_from_secret.add(e["name"])
                    elif "fieldRef" in vf:
                        env[e["name"]] = {"metadata.name": f"{name}-0"}.get(vf["fieldRef"]["fieldPath"], "field")
                    elif "configMapKeyRef" in vf:
                        r = vf["configMapKeyRef"]
                        env[e["name"]] = configmaps.get(r["name"], {}).get(r["key"], "")
                    else:
                        env[e["name"]] = "value"
            # --- ports and probes
            ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
            default = defaults.get(binary)
            expected = int(env["METRICS_PORT"]) if "METRICS_PORT" in env else default
            if expected is None:
                err(f"no METRICS_PORT and no known default port for {binary}")
            if expected not in ports.values():
                err(f"the metrics port {expected} is not a container port ({ports})")

            def port_of(probe):
                p = probe.get("httpGet", {}).get("port")
                return ports.get(p) if isinstance(p, str) else p

            for kind_p, path in (("livenessProbe", "/health/live"), ("readinessProbe", "/health/ready")):
                pr = c.get(kind_p)
                if not pr or "httpGet" not in pr:
                    err(f"{kind_p}: none, or not httpGet")
                    continue
                if pr["httpGet"].get("path") != path:
                    err(f"{kind_p}: path {pr['httpGet'].get('path')} is not {path}")
                if port_of(pr) != expected:
                    err(f"{kind_p}: port {pr['httpGet'].get('port')} -> {port_of(pr)} is not the metrics port {expected}")
            # Service and ServiceMonitor reach the metrics port
            svc = [s for s in services if selects(s["spec"].get("selector"), labels)]
            if not svc:
                err("no Service selects these pods")
            for s in svc:
                tports = [ports.get(p.get("targetPort")) if isinstance(p.get("targetPort"), str)
                          else p.get("targetPort", p.get("port")) for p in s["spec"].get("ports", [])]
                if expected not in tports:
                    err(f"Service {s['metadata']['name']} does not reach port {expected} ({tports})")
                pnames = {p.get("name") for p in s["spec"].get("ports", [])}
                sms = [m for m in by_kind.get("ServiceMonitor", [])
                       if selects(m["spec"].get("selector"), s["metadata"].get("labels", {}))
                       and any(ep.get("port") in pnames and ep.get("path", "/metrics") == "/metrics"
                               for ep in m["spec"].get("endpoints", []))]
                if not sms:
                    err(f"no ServiceMonitor scrapes /metrics of Service {s['metadata']['name']}")
            # --- security
            csc = c.get("securityContext", {})

            def sc(key):
                return csc.get(key, psc.get(key))

            if sc("runAsNonRoot") is not True:
                err("runAsNonRoot is not true")
            for key in ("runAsUser", "runAsGroup"):
                if not isinstance(sc(key), int) or sc(key) < 10000:
                    err(f"{key} {sc(key)} is not a uid/gid >= 10000")
            if csc.get("readOnlyRootFilesystem") is not True:
                err("readOnlyRootFilesystem is not true")
            if csc.get("allowPrivilegeEscalation") is not False:
                err("allowPrivilegeEscalation is not false")
            if csc.get("privileged"):
                err("privileged")
            if "ALL" not in (csc.get("capabilities", {}).get("drop") or []):
                err("capabilities do not drop ALL")
            if (sc("seccompProfile") or {}).get("type") != "RuntimeDefault":
                err("seccompProfile is not RuntimeDefault")
            if pod.get("automountServiceAccountToken") is not False:
                err("automountServiceAccountToken is not false")
            if pod.get("serviceAccountName") not in accounts:
                err(f"service account {pod.get('serviceAccountName')} is not in the build")
            if pod.get("terminationGracePeriodSeconds") != 30:
                err(f"terminationGracePeriodSeconds is {pod.get('terminationGracePeriodSeconds')}, not 30")
            res = c.get("resources", {})
            for part in ("requests", "limits"):
                for r in ("cpu", "memory"):
                    if r not in res.get(part, {}):
                        err(f"no {r} {part[:-1]}")
            # --- disruption budget, network policy
            if not [p for p in by_kind.get("PodDisruptionBudget", []) if selects(p["spec"].get("selector"), labels)]:
                err("no PodDisruptionBudget selects these pods")
            if not [p for p in by_kind.get("NetworkPolicy", []) if selects(p["spec"].get("podSelector"), labels)]:
                err("no NetworkPolicy selects these pods")
            # --- chains
            if binary in CHAINS:
                if kind != "StatefulSet":
                    err(f"a chain service must be a StatefulSet (stable, unique INSTANCE_ID), not a {kind}")
                iid = next((e for e in c.get("env", []) if e["name"] == "INSTANCE_ID"), None)
                if not iid or iid.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") != "metadata.name":
                    err("INSTANCE_ID must come from the pod name (fieldRef metadata.name)")
                if kind == "StatefulSet":
                    gov = [s for s in services if s["metadata"]["name"] == spec.get("serviceName")]
                    if not gov or gov[0]["spec"].get("clusterIP") != "None":
                        err(f"serviceName {spec.get('serviceName')} is not a headless Service of the build")
                if "replicas" in spec:
                    err("replicas is set: the ScaledObject owns it")
                ns = env.get("TOPIC_NAMESPACE", "")
                group = env.get("GROUP_ID") or (f"{ns}.tributary-{binary}" if ns else f"tributary-{binary}")
                topic = f"{ns}.raw.{binary}" if ns else f"raw.{binary}"
                sos = [s for s in by_kind.get("ScaledObject", [])
                       if s["spec"]["scaleTargetRef"].get("name") == name
                       and s["spec"]["scaleTargetRef"].get("kind") == kind]
                if len(sos) != 1:
                    err(f"{len(sos)} ScaledObjects target this {kind}, not 1")
                for so in sos:
                    for t in so["spec"].get("triggers", []):
                        md = t.get("metadata", {})
                        if t.get("type") != "kafka":
                            err(f"ScaledObject trigger {t.get('type')} is not kafka")
                            continue
                        if md.get("consumerGroup") != group:
                            err(f"ScaledObject consumerGroup {md.get('consumerGroup')} is not the service's group {group}")
                        if md.get("topic") != topic:
                            err(f"ScaledObject topic {md.get('topic')} is not {topic}")
                        src = md.get("bootstrapServersFromEnv")
                        if not md.get("bootstrapServers") and src not in env:
                            err(f"ScaledObject bootstrapServersFromEnv {src} is not in the container's environment")
                        if sasl and (not md.get("sasl") or not t.get("authenticationRef")):
                            err("Kafka uses SASL but the ScaledObject trigger has no sasl/authenticationRef")
            # --- config file
            files = {}
            for i, a in enumerate(args):
                if a in ("--config", "-c") and i + 1 < len(args):
                    path = args[i + 1]
                    found = False
                    for vm in c.get("volumeMounts", []):
                        mp = vm["mountPath"].rstrip("/") + "/"
                        if path.startswith(mp):
                            vol = next((v for v in pod.get("volumes", []) if v["name"] == vm["name"]), {})
                            cm = vol.get("configMap", {}).get("name")
                            key = path[len(mp):]
                            if cm in configmaps and key in configmaps[cm]:
                                files[path] = configmaps[cm][key]
                                found = True
                    if not found:
                        err(f"--config {path} is not a key of a ConfigMap mounted there")
            # --- secrets
            if sasl and "KAFKA_PROP_SASL_PASSWORD" not in env_from_secret:
                err("Kafka uses SASL but KAFKA_PROP_SASL_PASSWORD does not come from a Secret")
            if "SCHEMA_REGISTRY_URL" in env and not re.match(r"https?://", env["SCHEMA_REGISTRY_URL"]):
                err(f"SCHEMA_REGISTRY_URL {env['SCHEMA_REGISTRY_URL']} is not an http(s) URL")
            if "KAFKA_BOOTSTRAP" in env and not re.fullmatch(r"[\w.-]+:\d+(,[\w.-]+:\d+)*", env["KAFKA_BOOTSTRAP"]):
                err(f"KAFKA_BOOTSTRAP {env['KAFKA_BOOTSTRAP']} is not a host:port list")
            if "LAKE_URI" in env and not re.match(r"(hdfs://|file://|/)", env["LAKE_URI"]):
                err(f"LAKE_URI {env['LAKE_URI']} is not hdfs://, file:// or an absolute path")
            print(json.dumps({
                "workload": f"{kind}/{name}", "container": c["name"], "binary": binary,
                "args": args, "env": env, "metrics_port": expected, "files": files,
                "run_as": [sc("runAsUser"), sc("runAsGroup")],
                "errors": errors,
            }))

    # --- Airflow settings
    air = configmaps.get("tributary-airflow")
    if air is None:
        manifest_errors.append("no ConfigMap tributary-airflow")
    else:
        lake = next((v for k, v in configmaps.items() if k.startswith("tributary-lake")), {})
        ns = next((d["metadata"].get("namespace") for d in by_kind["ConfigMap"]
                   if d["metadata"]["name"] == "tributary-airflow"), None)
        want = {
            "TRIBUTARY_IMAGE": images.pop() if len(images) == 1 else f"one image (workloads use {sorted(images)})",
            "NAMESPACE": ns,
            "LAKE_URI": lake.get("LAKE_URI"),
            "KAFKA_BOOTSTRAP": env_cm.get("KAFKA_BOOTSTRAP"),
            "SCHEMA_REGISTRY_URL": env_cm.get("SCHEMA_REGISTRY_URL"),
        }
        for k, v in want.items():
            if air.get(k) != v:
                manifest_errors.append(f"tributary-airflow {k} is {air.get(k)!r}, expected {v!r}")
        if air.get("SERVICE_ACCOUNT") not in accounts:
            manifest_errors.append(f"tributary-airflow SERVICE_ACCOUNT {air.get('SERVICE_ACCOUNT')} is not in the build")
    print(json.dumps({"workload": "manifest", "errors": manifest_errors}))


if __name__ == "__main__":
    main()
