//! The rendered manifests against the binaries.

use super::*;

/// The chain services: the registry's (schemas/chains.txt).
pub(crate) const CHAINS: &[&str] = &tributary_engine::chains::NAMES;
/// The contract's default metrics ports, for binaries not built yet; a built binary's
/// --help must agree with it. The chains' are the registry's.
pub(crate) fn contract_ports() -> Vec<(&'static str, i64)> {
    let chains = tributary_engine::chains::ALL
        .iter()
        .map(|c| (c.name, i64::from(c.port)));
    chains
        .chain([("sink", 9106), ("ingest", 8080), ("serve", 9107)])
        .collect()
}
/// Binaries whose API listens on a port of its own (`PORT`) beside the metrics port: the
/// contract's API port, which the container must expose and a Service must reach.
pub(crate) const API_PORTS: &[(&str, i64)] = &[("serve", 8090)];
/// Environment variables a binary reads outside its clap settings, so its --help does not
/// name them: (binary, variable, where it is read). The name must still be in the binary.
pub(crate) const ENV_OUTSIDE_HELP: &[(&str, &str, &str)] = &[(
    "serve",
    "GRANTS_KEK_FILE",
    "tributary_view::grants::Kek::from_env (crates/view/src/grants.rs)",
)];
/// Stand-in contents, for the live runs, of files that manifests mount from Secrets, by the
/// variable that names the file; other such files get `secret-value`.
pub(crate) const SECRET_FILE_STANDINS: &[(&str, &str)] = &[
    // `<tenant> <sha256 hex of its token>` (the token `acme-live-run-token`; any hash will do).
    (
        "TENANT_TOKENS_FILE",
        "acme 0000000000000000000000000000000000000000000000000000000000000001\n",
    ),
    // The gateway's settings file: a tenant (its token comes from TENANT_TOKENS_FILE) and a
    // provider secret.
    (
        "TRIBUTARY_CONFIG",
        "[tenants.acme.mailgun]\nsigning_key = \"live-run-key\"\n",
    ),
    // 64 hex digits.
    (
        "GRANTS_KEK_FILE",
        "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n",
    ),
];

/// One container of a workload, as the manifests run it.
pub(crate) struct Container {
    pub(crate) label: String,
    pub(crate) binary: String,
    pub(crate) args: Vec<String>,
    /// The resolved environment (values from ConfigMaps; stand-ins for Secrets and fields).
    pub(crate) env: BTreeMap<String, String>,
    /// --config paths to their content.
    pub(crate) files: BTreeMap<String, String>,
    /// Environment variables naming a file of a mounted Secret.
    pub(crate) secret_files: BTreeSet<String>,
    pub(crate) run_as: (Option<i64>, Option<i64>),
    pub(crate) errors: Vec<String>,
}

pub(crate) struct Build {
    pub(crate) overlay: &'static str,
    pub(crate) containers: Vec<Container>,
    /// Findings about the build as a whole.
    pub(crate) errors: Vec<String>,
}

pub(crate) fn kustomize(overlay: &'static str) -> Vec<Value> {
    let out = Command::new(tool("kustomize"))
        .arg("build")
        .arg(root().join("k8s/overlays").join(overlay))
        .output()
        .expect("kustomize runs");
    assert!(
        out.status.success(),
        "kustomize build k8s/overlays/{overlay}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).expect("a YAML document"))
        .filter(|v| !v.is_null())
        .collect()
}

pub(crate) fn selects(selector: Option<&Value>, labels: &Value) -> bool {
    let Some(sel) = selector else { return false };
    let sel = sel.get("matchLabels").unwrap_or(sel);
    let Some(m) = sel.as_object().filter(|m| !m.is_empty()) else {
        return false;
    };
    m.iter()
        .filter(|(_, v)| v.is_string())
        .all(|(k, v)| labels.get(k) == Some(v))
}

/// The default metrics port of each binary: its --help's, or the contract's if not built.
pub(crate) fn default_ports(
    help: &BTreeMap<String, Result<String, String>>,
    errors: &mut Vec<String>,
) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for (b, port) in &contract_ports() {
        if let Some(Ok(h)) = help.get(*b) {
            // `METRICS_PORT (default N)`, or clap's `[env: METRICS_PORT]` with its `[default: N]`.
            let p = h
                .find("METRICS_PORT (default ")
                .and_then(|i| {
                    let d: String = h[i + 22..].chars().take_while(char::is_ascii_digit).collect();
                    d.parse::<i64>().ok()
                })
                .or_else(|| {
                    // clap's long help: the setting's `[env: METRICS_PORT]` and, on the
                    // lines after it (or on the same line, in short help), `[default: N]`.
                    let i = h.find("[env: METRICS_PORT")?;
                    let block = h[i..].split("\n\n").next()?;
                    let j = block.find("[default: ")?;
                    let d: String = block[j + 10..].chars().take_while(char::is_ascii_digit).collect();
                    d.parse::<i64>().ok()
                });
            match p {
                None => errors.push(format!("{b} --help names no METRICS_PORT default")),
                Some(p) if p != *port => errors.push(format!(
                    "{b} --help says METRICS_PORT default {p}, the contract says {port}"
                )),
                _ => {}
            }
        }
        out.insert(b.to_string(), *port);
    }
    out
}

/// `<binary> --help` of each contract binary that is built.
pub(crate) fn helps() -> BTreeMap<String, Result<String, String>> {
    let mut out = BTreeMap::new();
    for (b, _) in contract_ports() {
        let p = bin_dir().join(b);
        if !p.is_file() {
            continue;
        }
        let r = match Command::new(&p).arg("--help").output() {
            Ok(o) if o.status.success() => Ok(format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            )),
            Ok(o) => Err(format!("{b} --help exits {}", o.status)),
            Err(e) => Err(format!("{b} --help: {e}")),
        };
        out.insert(b.to_string(), r);
    }
    out
}

pub(crate) fn is_secretish(name: &str) -> bool {
    ["PASSWORD", "SECRET", "TOKEN", "CREDENTIAL", "KEK"]
        .iter()
        .any(|w| name.contains(w))
        || name.ends_with("_KEY")
}

pub(crate) fn host_port_list(s: &str) -> bool {
    !s.is_empty()
        && s.split(',').all(|hp| {
            hp.rsplit_once(':').is_some_and(|(h, p)| {
                !h.is_empty()
                    && h.chars().all(|c| c.is_alphanumeric() || "_.-".contains(c))
                    && !p.is_empty()
                    && p.chars().all(|c| c.is_ascii_digit())
            })
        })
}

/// The static checks of one build, and what running its containers needs.
pub(crate) fn check_build(overlay: &'static str, docs: &[Value], defaults: &BTreeMap<String, i64>) -> Build {
    let mut by_kind: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
    for d in docs {
        by_kind.entry(s(d, "kind")).or_default().push(d);
    }
    let kind = |k: &str| by_kind.get(k).cloned().unwrap_or_default();
    let name_of = |d: &Value| {
        d.pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let str_map = |v: Option<&Value>| -> BTreeMap<String, String> {
        v.and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_owned)))
                    .collect()
            })
            .unwrap_or_default()
    };
    let configmaps: BTreeMap<String, BTreeMap<String, String>> = kind("ConfigMap")
        .iter()
        .map(|d| (name_of(d), str_map(d.get("data"))))
        .collect();
    let accounts: BTreeSet<String> = kind("ServiceAccount").iter().map(|d| name_of(d)).collect();
    let services = kind("Service");
    let env_cm = configmaps
        .iter()
        .find(|(k, _)| k.starts_with("tributary-env"))
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let sasl = env_cm
        .get("KAFKA_PROP_SECURITY_PROTOCOL")
        .is_some_and(|p| p.to_uppercase().starts_with("SASL"));
    let mut images = BTreeSet::new();
    let mut containers = Vec::new();
    let mut errors = Vec::new();

    for w in kind("StatefulSet").into_iter().chain(kind("Deployment")) {
        let (wkind, wname) = (s(w, "kind"), name_of(w));
        let spec = &w["spec"];
        let pod = &spec["template"]["spec"];
        let labels = spec.pointer("/template/metadata/labels").cloned().unwrap_or(json!({}));
        let psc = pod.get("securityContext").cloned().unwrap_or(json!({}));
        if let Some((_, image)) = THIRD_PARTY.iter().find(|(n, _)| *n == wname) {
            // Not a Tributary binary: its own checks, and not in `images`/`containers`.
            let ctx = ThirdParty {
                image,
                pod,
                labels: &labels,
                services: &services,
                monitors: &kind("ServiceMonitor"),
                budgets: &kind("PodDisruptionBudget"),
                policies: &kind("NetworkPolicy"),
                airflow: configmaps.get("tributary-airflow"),
            };
            errors.extend(ctx.check().into_iter().map(|e| format!("{wkind}/{wname}: {e}")));
            continue;
        }
        for c in arr(pod, "containers") {
            let mut errors = Vec::new();
            let mut err = |e: String| errors.push(e);
            images.insert(s(c, "image").to_owned());
            let cmd: Vec<String> = arr(c, "command")
                .iter()
                .map(|v| v.as_str().unwrap_or("").to_owned())
                .collect();
            let mut args: Vec<String> = cmd.iter().skip(1).cloned().collect();
            args.extend(
                arr(c, "args")
                    .iter()
                    .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned)),
            );
            let binary = cmd.first().cloned().unwrap_or_default();
            if binary.is_empty() || binary.contains('/') {
                err(format!(
                    "command should be the bare binary name (on PATH in the image), got {cmd:?}"
                ));
            }
            // --- files of mounted Secrets: their paths in the container
            let mut secret_paths = BTreeSet::new();
            for vm in arr(c, "volumeMounts") {
                let Some(vol) = arr(pod, "volumes").iter().find(|v| s(v, "name") == s(vm, "name")) else {
                    continue;
                };
                let mp = s(vm, "mountPath").trim_end_matches('/').to_owned();
                let Some(sec) = vol.get("secret") else { continue };
                if s(sec, "secretName").is_empty() {
                    err(format!("volume {} names no Secret", s(vol, "name")));
                }
                // Without `items` every key is a file; with them, only their paths.
                match sec.get("items").and_then(Value::as_array) {
                    Some(items) => secret_paths.extend(items.iter().map(|i| format!("{mp}/{}", s(i, "path")))),
                    None => {
                        secret_paths.insert(format!("{mp}/*"));
                    }
                }
            }
            let in_secret = |v: &str| {
                secret_paths.contains(v)
                    || v.rsplit_once('/')
                        .is_some_and(|(dir, _)| secret_paths.contains(&format!("{dir}/*")))
            };
            let mut secret_files = BTreeSet::new();
            // --- environment, resolved
            let mut env = BTreeMap::new();
            let mut env_from_secret = BTreeSet::new();
            for ef in arr(c, "envFrom") {
                if let Some(r) = ef.get("configMapRef") {
                    let r = s(r, "name");
                    match configmaps.get(r) {
                        Some(cm) => env.extend(cm.clone()),
                        None => err(format!("envFrom ConfigMap {r} is not in the build")),
                    }
                } else if ef.get("secretRef").is_some() {
                    err(
                        "envFrom secretRef hides the variable names from this check: use env[].valueFrom.secretKeyRef"
                            .into(),
                    );
                }
            }
            for e in arr(c, "env") {
                let n = s(e, "name").to_owned();
                if let Some(v) = e.get("value") {
                    let v = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                    // A file of a mounted Secret: `*_FILE`, or the settings file of a service
                    // whose settings hold secrets (the gateway's provider keys).
                    if (n.ends_with("_FILE") || n == "TRIBUTARY_CONFIG") && in_secret(&v) {
                        secret_files.insert(n.clone());
                    } else if is_secretish(&n) && !v.is_empty() {
                        err(format!(
                            "{n} has a literal value: take it from a Secret (secretKeyRef, or a file of a mounted Secret)"
                        ));
                    }
                    env.insert(n, v);
                } else if let Some(vf) = e.get("valueFrom") {
                    let v = if vf.get("secretKeyRef").is_some() {
                        env_from_secret.insert(n.clone());
                        "secret-value".to_owned()
                    } else if let Some(f) = vf.get("fieldRef") {
                        if s(f, "fieldPath") == "metadata.name" {
                            format!("{wname}-0")
                        } else {
                            "field".to_owned()
                        }
                    } else if let Some(r) = vf.get("configMapKeyRef") {
                        configmaps
                            .get(s(r, "name"))
                            .and_then(|m| m.get(s(r, "key")))
                            .cloned()
                            .unwrap_or_default()
                    } else {
                        "value".to_owned()
                    };
                    env.insert(n, v);
                }
            }
            // --- ports and probes
            let ports: BTreeMap<String, i64> = arr(c, "ports")
                .iter()
                .map(|p| {
                    (
                        s(p, "name").to_owned(),
                        p.get("containerPort").and_then(Value::as_i64).unwrap_or(-1),
                    )
                })
                .collect();
            let port_ref = |p: Option<&Value>| match p {
                Some(Value::String(n)) => ports.get(n).copied(),
                Some(v) => v.as_i64(),
                None => None,
            };
            let expected = match env.get("METRICS_PORT") {
                Some(p) => p.parse::<i64>().ok(),
                None => defaults.get(&binary).copied(),
            };
            let Some(expected) = expected else {
                err(format!("no METRICS_PORT and no known default port for {binary}"));
                continue;
            };
            if !ports.values().any(|p| *p == expected) {
                err(format!(
                    "the metrics port {expected} is not a container port ({ports:?})"
                ));
            }
            for (probe, path) in [("livenessProbe", "/health/live"), ("readinessProbe", "/health/ready")] {
                let Some(h) = c.get(probe).and_then(|p| p.get("httpGet")) else {
                    err(format!("{probe}: none, or not httpGet"));
                    continue;
                };
                if s(h, "path") != path {
                    err(format!("{probe}: path {} is not {path}", s(h, "path")));
                }
                if port_ref(h.get("port")) != Some(expected) {
                    err(format!(
                        "{probe}: port {:?} is not the metrics port {expected}",
                        h.get("port")
                    ));
                }
            }
            // The API port of a binary that has one apart from the metrics port.
            let api = API_PORTS
                .iter()
                .find(|(b, _)| *b == binary)
                .map(|(_, p)| env.get("PORT").and_then(|p| p.parse::<i64>().ok()).unwrap_or(*p));
            if let Some(api) = api {
                if !ports.values().any(|p| *p == api) {
                    err(format!("the API port {api} is not a container port ({ports:?})"));
                }
                let reached = services.iter().any(|sv| {
                    selects(sv.pointer("/spec/selector"), &labels)
                        && arr(&sv["spec"], "ports")
                            .iter()
                            .any(|p| port_ref(p.get("targetPort").or(p.get("port"))) == Some(api))
                });
                if !reached {
                    err(format!("no Service reaches the API port {api}"));
                }
            }
            // Service and ServiceMonitor reach the metrics port
            let svc: Vec<&&Value> = services
                .iter()
                .filter(|sv| selects(sv.pointer("/spec/selector"), &labels))
                .collect();
            if svc.is_empty() {
                err("no Service selects these pods".into());
            }
            for sv in svc {
                let sports = arr(&sv["spec"], "ports");
                let tports: Vec<Option<i64>> = sports
                    .iter()
                    .map(|p| port_ref(p.get("targetPort").or(p.get("port"))))
                    .collect();
                if !tports.contains(&Some(expected)) {
                    err(format!(
                        "Service {} does not reach port {expected} ({tports:?})",
                        name_of(sv)
                    ));
                }
                let pnames: BTreeSet<&str> = sports.iter().map(|p| s(p, "name")).collect();
                let slabels = sv.pointer("/metadata/labels").cloned().unwrap_or(json!({}));
                let scraped = kind("ServiceMonitor").iter().any(|m| {
                    selects(m.pointer("/spec/selector"), &slabels)
                        && arr(&m["spec"], "endpoints")
                            .iter()
                            .any(|ep| pnames.contains(s(ep, "port")) && ep.get("path").is_none_or(|p| p == "/metrics"))
                });
                if !scraped {
                    err(format!("no ServiceMonitor scrapes /metrics of Service {}", name_of(sv)));
                }
            }
            // --- security
            let csc = c.get("securityContext").cloned().unwrap_or(json!({}));
            let sc = |k: &str| csc.get(k).or(psc.get(k)).cloned();
            if sc("runAsNonRoot") != Some(json!(true)) {
                err("runAsNonRoot is not true".into());
            }
            for key in ["runAsUser", "runAsGroup"] {
                if sc(key).and_then(|v| v.as_i64()).is_none_or(|id| id < 10000) {
                    err(format!("{key} {:?} is not a uid/gid >= 10000", sc(key)));
                }
            }
            if csc.get("readOnlyRootFilesystem") != Some(&json!(true)) {
                err("readOnlyRootFilesystem is not true".into());
            }
            if csc.get("allowPrivilegeEscalation") != Some(&json!(false)) {
                err("allowPrivilegeEscalation is not false".into());
            }
            if csc.get("privileged") == Some(&json!(true)) {
                err("privileged".into());
            }
            if !csc
                .pointer("/capabilities/drop")
                .and_then(Value::as_array)
                .is_some_and(|d| d.contains(&json!("ALL")))
            {
                err("capabilities do not drop ALL".into());
            }
            if sc("seccompProfile").as_ref().map(|p| s(p, "type")) != Some("RuntimeDefault") {
                err("seccompProfile is not RuntimeDefault".into());
            }
            if pod.get("automountServiceAccountToken") != Some(&json!(false)) {
                err("automountServiceAccountToken is not false".into());
            }
            if !accounts.contains(s(pod, "serviceAccountName")) {
                err(format!(
                    "service account {} is not in the build",
                    s(pod, "serviceAccountName")
                ));
            }
            if pod.get("terminationGracePeriodSeconds") != Some(&json!(30)) {
                err(format!(
                    "terminationGracePeriodSeconds is {:?}, not 30",
                    pod.get("terminationGracePeriodSeconds")
                ));
            }
            for part in ["requests", "limits"] {
                for r in ["cpu", "memory"] {
                    if c.pointer(&format!("/resources/{part}/{r}")).is_none() {
                        err(format!("no {r} {}", &part[..part.len() - 1]));
                    }
                }
            }
            // --- disruption budget, network policy
            if !kind("PodDisruptionBudget")
                .iter()
                .any(|p| selects(p.pointer("/spec/selector"), &labels))
            {
                err("no PodDisruptionBudget selects these pods".into());
            }
            if !kind("NetworkPolicy")
                .iter()
                .any(|p| selects(p.pointer("/spec/podSelector"), &labels))
            {
                err("no NetworkPolicy selects these pods".into());
            }
            // --- chains
            if CHAINS.contains(&binary.as_str()) {
                if wkind != "StatefulSet" {
                    err(format!(
                        "a chain service must be a StatefulSet (stable, unique INSTANCE_ID), not a {wkind}"
                    ));
                }
                let iid = arr(c, "env").iter().find(|e| s(e, "name") == "INSTANCE_ID");
                if iid.and_then(|e| e.pointer("/valueFrom/fieldRef/fieldPath")) != Some(&json!("metadata.name")) {
                    err("INSTANCE_ID must come from the pod name (fieldRef metadata.name)".into());
                }
                if wkind == "StatefulSet" {
                    let gov = services.iter().find(|sv| name_of(sv) == s(spec, "serviceName"));
                    if !gov.is_some_and(|g| g.pointer("/spec/clusterIP") == Some(&json!("None"))) {
                        err(format!(
                            "serviceName {} is not a headless Service of the build",
                            s(spec, "serviceName")
                        ));
                    }
                }
                if spec.get("replicas").is_some() {
                    err("replicas is set: the ScaledObject owns it".into());
                }
                let ns = env.get("TOPIC_NAMESPACE").cloned().unwrap_or_default();
                let dot = if ns.is_empty() { String::new() } else { format!("{ns}.") };
                let group = env
                    .get("GROUP_ID")
                    .cloned()
                    .unwrap_or_else(|| format!("{dot}tributary-{binary}"));
                let topic = format!("{dot}raw.{binary}");
                let scaled = kind("ScaledObject");
                let sos: Vec<&&Value> = scaled
                    .iter()
                    .filter(|so| {
                        so.pointer("/spec/scaleTargetRef/name") == Some(&json!(wname))
                            && so.pointer("/spec/scaleTargetRef/kind") == Some(&json!(wkind))
                    })
                    .collect();
                if sos.len() != 1 {
                    err(format!("{} ScaledObjects target this {wkind}, not 1", sos.len()));
                }
                for so in sos {
                    for t in arr(&so["spec"], "triggers") {
                        let md = t.get("metadata").cloned().unwrap_or(json!({}));
                        if s(t, "type") != "kafka" {
                            err(format!("ScaledObject trigger {} is not kafka", s(t, "type")));
                            continue;
                        }
                        if s(&md, "consumerGroup") != group {
                            err(format!(
                                "ScaledObject consumerGroup {} is not the service's group {group}",
                                s(&md, "consumerGroup")
                            ));
                        }
                        if s(&md, "topic") != topic {
                            err(format!("ScaledObject topic {} is not {topic}", s(&md, "topic")));
                        }
                        let src = s(&md, "bootstrapServersFromEnv");
                        if s(&md, "bootstrapServers").is_empty() && !env.contains_key(src) {
                            err(format!(
                                "ScaledObject bootstrapServersFromEnv {src} is not in the container's environment"
                            ));
                        }
                        if sasl && (md.get("sasl").is_none() || t.get("authenticationRef").is_none()) {
                            err("Kafka uses SASL but the ScaledObject trigger has no sasl/authenticationRef".into());
                        }
                    }
                }
            }
            // --- config file
            let mut files = BTreeMap::new();
            for (i, a) in args.iter().enumerate() {
                if (a == "--config" || a == "-c") && i + 1 < args.len() {
                    let path = &args[i + 1];
                    let mut found = false;
                    for vm in arr(c, "volumeMounts") {
                        let mp = format!("{}/", s(vm, "mountPath").trim_end_matches('/'));
                        let Some(key) = path.strip_prefix(&mp) else { continue };
                        let vol = arr(pod, "volumes").iter().find(|v| s(v, "name") == s(vm, "name"));
                        let cm = vol
                            .and_then(|v| v.pointer("/configMap/name"))
                            .and_then(Value::as_str)
                            .unwrap_or("");
                        if let Some(content) = configmaps.get(cm).and_then(|m| m.get(key)) {
                            files.insert(path.clone(), content.clone());
                            found = true;
                        }
                    }
                    if !found {
                        err(format!("--config {path} is not a key of a ConfigMap mounted there"));
                    }
                }
            }
            // --- secrets and addresses
            if sasl && !env_from_secret.contains("KAFKA_PROP_SASL_PASSWORD") {
                err("Kafka uses SASL but KAFKA_PROP_SASL_PASSWORD does not come from a Secret".into());
            }
            if let Some(u) = env.get("SCHEMA_REGISTRY_URL") {
                if !(u.starts_with("http://") || u.starts_with("https://")) {
                    err(format!("SCHEMA_REGISTRY_URL {u} is not an http(s) URL"));
                }
            }
            if let Some(b) = env.get("KAFKA_BOOTSTRAP") {
                if !host_port_list(b) {
                    err(format!("KAFKA_BOOTSTRAP {b} is not a host:port list"));
                }
            }
            if let Some(l) = env.get("LAKE_URI") {
                if !(l.starts_with("hdfs://") || l.starts_with("file://") || l.starts_with('/')) {
                    err(format!("LAKE_URI {l} is not hdfs://, file:// or an absolute path"));
                }
            }
            let id = |k: &str| sc(k).and_then(|v| v.as_i64());
            containers.push(Container {
                label: format!("{overlay} {wkind}/{wname}/{}", s(c, "name")),
                binary,
                args,
                env,
                files,
                secret_files,
                run_as: (id("runAsUser"), id("runAsGroup")),
                errors,
            });
        }
    }

    // --- Airflow settings
    match configmaps.get("tributary-airflow") {
        None => errors.push("no ConfigMap tributary-airflow".to_owned()),
        Some(air) => {
            let lake = configmaps
                .iter()
                .find(|(k, _)| k.starts_with("tributary-lake"))
                .map(|(_, v)| v.clone());
            let ns = kind("ConfigMap")
                .iter()
                .find(|d| name_of(d) == "tributary-airflow")
                .and_then(|d| d.pointer("/metadata/namespace"))
                .and_then(Value::as_str)
                .map(str::to_owned);
            let image = if images.len() == 1 {
                images.iter().next().cloned()
            } else {
                Some(format!("one image (workloads use {images:?})"))
            };
            let want = [
                ("TRIBUTARY_IMAGE", image),
                ("NAMESPACE", ns),
                ("LAKE_URI", lake.and_then(|l| l.get("LAKE_URI").cloned())),
                ("KAFKA_BOOTSTRAP", env_cm.get("KAFKA_BOOTSTRAP").cloned()),
                ("SCHEMA_REGISTRY_URL", env_cm.get("SCHEMA_REGISTRY_URL").cloned()),
            ];
            for (k, v) in want {
                if air.get(k) != v.as_ref() {
                    errors.push(format!("tributary-airflow {k} is {:?}, expected {v:?}", air.get(k)));
                }
            }
            let sa = air.get("SERVICE_ACCOUNT").cloned().unwrap_or_default();
            if !accounts.contains(&sa) {
                errors.push(format!("tributary-airflow SERVICE_ACCOUNT {sa:?} is not in the build"));
            }
        }
    }
    Build {
        overlay,
        containers,
        errors,
    }
}

/// Workloads that run a third-party image (name, image without tag).
pub(crate) const THIRD_PARTY: &[(&str, &str)] = &[("pushgateway", "prom/pushgateway")];

/// A third-party workload of the build and what it must agree with.
pub(crate) struct ThirdParty<'a> {
    pub(crate) image: &'a str,
    pub(crate) pod: &'a Value,
    pub(crate) labels: &'a Value,
    pub(crate) services: &'a [&'a Value],
    pub(crate) monitors: &'a [&'a Value],
    pub(crate) budgets: &'a [&'a Value],
    pub(crate) policies: &'a [&'a Value],
    pub(crate) airflow: Option<&'a BTreeMap<String, String>>,
}

impl ThirdParty<'_> {
    /// The Pushgateway: a pinned image, probes on its port, locked down like the services,
    /// a budget and a network policy, a Service that only a ServiceMonitor with honorLabels
    /// scrapes (the pushed `job` labels survive), and the Airflow ConfigMap's
    /// TRIBUTARY_PUSHGATEWAY pointing at that Service.
    pub(crate) fn check(&self) -> Vec<String> {
        let mut errors = Vec::new();
        let mut err = |e: String| errors.push(e);
        let psc = self.pod.get("securityContext").cloned().unwrap_or(json!({}));
        let containers = arr(self.pod, "containers");
        if containers.len() != 1 {
            err(format!("{} containers, expected 1", containers.len()));
        }
        for c in containers {
            let image = s(c, "image");
            match image.split_once(':') {
                Some((name, tag)) if name == self.image && !tag.is_empty() && tag != "latest" => {}
                _ => err(format!("image {image} is not {}:<pinned tag>", self.image)),
            }
            let ports: BTreeMap<&str, i64> = arr(c, "ports")
                .iter()
                .map(|p| {
                    (
                        s(p, "name"),
                        p.get("containerPort").and_then(Value::as_i64).unwrap_or(-1),
                    )
                })
                .collect();
            let port = ports.values().next().copied();
            for probe in ["livenessProbe", "readinessProbe"] {
                let p = c.pointer(&format!("/{probe}/httpGet/port"));
                let n = match p {
                    Some(Value::String(n)) => ports.get(n.as_str()).copied(),
                    Some(v) => v.as_i64(),
                    None => None,
                };
                if n.is_none() || n != port {
                    err(format!("{probe}: not an httpGet on the container port {port:?}"));
                }
            }
            let csc = c.get("securityContext").cloned().unwrap_or(json!({}));
            let sc = |k: &str| csc.get(k).or(psc.get(k)).cloned();
            if sc("runAsNonRoot") != Some(json!(true)) {
                err("runAsNonRoot is not true".into());
            }
            if csc.get("readOnlyRootFilesystem") != Some(&json!(true)) {
                err("readOnlyRootFilesystem is not true".into());
            }
            if csc.get("allowPrivilegeEscalation") != Some(&json!(false)) {
                err("allowPrivilegeEscalation is not false".into());
            }
            if !csc
                .pointer("/capabilities/drop")
                .and_then(Value::as_array)
                .is_some_and(|d| d.contains(&json!("ALL")))
            {
                err("capabilities do not drop ALL".into());
            }
            for part in ["requests", "limits"] {
                for r in ["cpu", "memory"] {
                    if c.pointer(&format!("/resources/{part}/{r}")).is_none() {
                        err(format!("no {r} {}", &part[..part.len() - 1]));
                    }
                }
            }
        }
        if self.pod.get("automountServiceAccountToken") != Some(&json!(false)) {
            err("automountServiceAccountToken is not false".into());
        }
        if !self
            .budgets
            .iter()
            .any(|p| selects(p.pointer("/spec/selector"), self.labels))
        {
            err("no PodDisruptionBudget selects these pods".into());
        }
        if !self.policies.iter().any(|p| {
            selects(p.pointer("/spec/podSelector"), self.labels)
                && p.pointer("/spec/podSelector/matchLabels/app.kubernetes.io~1name")
                    .is_some()
        }) {
            err("no NetworkPolicy of its own lets the jobs push to it".into());
        }
        let svcs: Vec<&&Value> = self
            .services
            .iter()
            .filter(|sv| selects(sv.pointer("/spec/selector"), self.labels))
            .collect();
        if svcs.len() != 1 {
            err(format!("{} Services select these pods, expected 1", svcs.len()));
        }
        for sv in svcs {
            let sname = sv.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
            let sports = arr(&sv["spec"], "ports");
            let pnames: BTreeSet<&str> = sports.iter().map(|p| s(p, "name")).collect();
            let slabels = sv.pointer("/metadata/labels").cloned().unwrap_or(json!({}));
            let scrapes: Vec<&Value> = self
                .monitors
                .iter()
                .filter(|m| selects(m.pointer("/spec/selector"), &slabels))
                .flat_map(|m| arr(&m["spec"], "endpoints"))
                .filter(|ep| pnames.contains(s(ep, "port")))
                .collect();
            if scrapes.is_empty() {
                err(format!("no ServiceMonitor scrapes Service {sname}"));
            }
            for ep in scrapes {
                if ep.get("honorLabels") != Some(&json!(true)) {
                    err(format!(
                        "a ServiceMonitor scrapes Service {sname} port {} without honorLabels: the pushed job labels would be lost",
                        s(ep, "port")
                    ));
                }
            }
            let sport = sports.first().and_then(|p| p.get("port")).and_then(Value::as_i64);
            let want = format!("http://{sname}:{}", sport.unwrap_or(-1));
            let got = self.airflow.and_then(|a| a.get("TRIBUTARY_PUSHGATEWAY"));
            if got != Some(&want) {
                err(format!(
                    "tributary-airflow TRIBUTARY_PUSHGATEWAY is {got:?}, expected {want:?}"
                ));
            }
        }
        errors
    }
}

pub(crate) fn builds(errors: &mut Vec<String>) -> (Vec<Build>, BTreeMap<String, Result<String, String>>) {
    let help = helps();
    let defaults = default_ports(&help, errors);
    let builds = ["dev", "prod"]
        .into_iter()
        .map(|o| check_build(o, &kustomize(o), &defaults))
        .collect();
    (builds, help)
}

#[test]
pub(crate) fn manifests_match_binaries() {
    let mut failures = Vec::new();
    let (builds, help) = builds(&mut failures);
    let (mut ok, mut skipped) = (0, 0);
    for b in &builds {
        failures.extend(b.errors.iter().map(|e| format!("{}: {e}", b.overlay)));
        for c in &b.containers {
            if c.errors.is_empty() {
                ok += 1;
            }
            failures.extend(c.errors.iter().map(|e| format!("{}: {e}", c.label)));
            let h = match help.get(&c.binary) {
                None => {
                    println!(
                        "SKIP  {}: no binary {} (not built yet): its flags and environment names are not checked",
                        c.label,
                        bin_dir().join(&c.binary).display()
                    );
                    skipped += 1;
                    continue;
                }
                Some(Err(e)) => {
                    failures.push(format!("{}: {e}", c.label));
                    continue;
                }
                Some(Ok(h)) => h,
            };
            for a in c.args.iter().filter(|a| a.starts_with('-')) {
                let flag = a.split('=').next().unwrap_or(a);
                if !has_word(h, flag) {
                    failures.push(format!("{}: flag {a} is not in {} --help", c.label, c.binary));
                }
            }
            let missing: Vec<&String> = c
                .env
                .keys()
                .filter(|v| match v.as_str() {
                    // Read by tributary_engine::init_tracing (crates/engine/src/lib.rs), and
                    // local mode by tributary_engine::config (every service that has one).
                    "RUST_LOG" | "LOG_FORMAT" | "TRIBUTARY_LOCAL" => false,
                    v if v.starts_with("KAFKA_PROP_") => !h.contains("KAFKA_PROP_<NAME>"),
                    v if ENV_OUTSIDE_HELP.iter().any(|(b, n, _)| *b == c.binary && *n == v) => {
                        // Read outside clap: the name must at least be in the binary.
                        let bytes = std::fs::read(bin_dir().join(&c.binary)).unwrap_or_default();
                        !bytes.windows(v.len()).any(|w| w == v.as_bytes())
                    }
                    v => !has_word(h, v),
                })
                .collect();
            if !missing.is_empty() {
                failures.push(format!(
                    "{}: environment variables not in {} --help (the binary would ignore them): {missing:?}",
                    c.label, c.binary
                ));
            }
        }
    }
    let n: usize = builds.iter().map(|b| b.containers.len()).sum();
    println!(
        "manifests: {n} containers in dev and prod, {ok} without static findings, {skipped} without a binary: {} failures",
        failures.len()
    );
    assert!(n >= 12, "only {n} containers in the builds");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Each fault planted in the dev build must give a static finding: the manifest checks
/// still catch what they claim to.
#[test]
pub(crate) fn manifest_checks_catch_seeded_faults() {
    let mut ignored = Vec::new();
    let help = helps();
    let defaults = default_ports(&help, &mut ignored);
    let docs = kustomize("dev");
    let users = |d: &Value| s(d, "kind") == "StatefulSet" && d.pointer("/metadata/name") == Some(&json!("users"));
    let container = "/spec/template/spec/containers/0";
    type Plant = fn(&mut Value);
    let seeded: &[(&str, &str, Plant)] = &[
        ("probes", "livenessProbe: path", |d| {
            d["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["path"] = json!("/healthz")
        }),
        ("ports", "readinessProbe: port", |d| {
            d["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["port"] = json!(1234)
        }),
        ("security", "readOnlyRootFilesystem", |d| {
            d["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"] = json!(false)
        }),
        ("security", "runAsUser", |d| {
            d["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsUser"] = json!(0)
        }),
        ("resources", "no memory limit", |d| {
            d["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
                .as_object_mut()
                .map(|m| m.remove("memory"));
        }),
        ("chains", "replicas is set", |d| d["spec"]["replicas"] = json!(3)),
        ("chains", "INSTANCE_ID", |d| {
            let env = d["spec"]["template"]["spec"]["containers"][0]["env"]
                .as_array_mut()
                .expect("env");
            env.retain(|e| s(e, "name") != "INSTANCE_ID");
        }),
        ("config", "--config", |d| {
            d["spec"]["template"]["spec"]["containers"][0]["volumeMounts"] = json!([]);
        }),
        ("secrets", "literal value", |d| {
            let env = d["spec"]["template"]["spec"]["containers"][0]["env"]
                .as_array_mut()
                .expect("env");
            env.push(json!({"name": "KAFKA_PROP_SASL_PASSWORD", "value": "hunter2"}));
        }),
        ("grace", "terminationGracePeriodSeconds", |d| {
            d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = json!(5)
        }),
    ];
    assert!(docs.iter().any(users), "no StatefulSet users in the dev build");
    assert!(docs
        .iter()
        .find(|d| users(d))
        .and_then(|d| d.pointer(container))
        .is_some());
    // The findings for `binary`'s containers of the dev build with `plant` applied to the
    // document `pick` selects; a failure line unless one holds `expect`.
    let planted = |binary: &str, pick: &dyn Fn(&Value) -> bool, plant: Plant, expect: &str| -> Option<String> {
        let mut docs = docs.clone();
        plant(docs.iter_mut().find(|d| pick(d)).expect(binary));
        let b = check_build("dev", &docs, &defaults);
        let errors: Vec<&String> = b
            .containers
            .iter()
            .filter(|c| c.binary == binary)
            .flat_map(|c| &c.errors)
            .collect();
        (!errors.iter().any(|e| e.contains(expect))).then(|| format!("no finding with {expect:?}: {errors:?}"))
    };
    let mut failed = Vec::new();
    for (what, expect, plant) in seeded {
        if let Some(f) = planted("users", &users, *plant, expect) {
            failed.push(format!("{what}: {f}"));
        }
    }
    // The Pushgateway's faults are findings of the build as a whole.
    fn named(d: &Value, kind: &str, name: &str) -> bool {
        s(d, "kind") == kind && d.pointer("/metadata/name") == Some(&json!(name))
    }
    type PlantAll = fn(&mut Vec<Value>);
    let pushgateway_faults: &[(&str, &str, PlantAll)] = &[
        ("honorLabels", "without honorLabels", |docs| {
            for d in docs
                .iter_mut()
                .filter(|d| named(d, "ServiceMonitor", "tributary-pushgateway"))
            {
                d["spec"]["endpoints"][0]["honorLabels"] = json!(false);
            }
        }),
        ("image", "pinned tag", |docs| {
            for d in docs.iter_mut().filter(|d| named(d, "Deployment", "pushgateway")) {
                d["spec"]["template"]["spec"]["containers"][0]["image"] = json!("prom/pushgateway:latest");
            }
        }),
        ("airflow", "TRIBUTARY_PUSHGATEWAY", |docs| {
            for d in docs.iter_mut().filter(|d| named(d, "ConfigMap", "tributary-airflow")) {
                d["data"]["TRIBUTARY_PUSHGATEWAY"] = json!("http://elsewhere:9091");
            }
        }),
    ];
    for (what, expect, plant) in pushgateway_faults {
        let mut docs = docs.clone();
        plant(&mut docs);
        let b = check_build("dev", &docs, &defaults);
        if !b.errors.iter().any(|e| e.contains(expect)) {
            failed.push(format!(
                "pushgateway {what}: no finding with {expect:?}: {:?}",
                b.errors
            ));
        }
    }
    // serve: its Secret files and its API port.
    let serve = |d: &Value| s(d, "kind") == "Deployment" && d.pointer("/metadata/name") == Some(&json!("serve"));
    let serve_faults: &[(&str, &str, Plant)] = &[
        ("secret file", "GRANTS_KEK_FILE has a literal value", |d| {
            for v in d["spec"]["template"]["spec"]["volumes"]
                .as_array_mut()
                .expect("volumes")
            {
                if v.get("secret")
                    .is_some_and(|s| s["secretName"] == json!("tributary-grants-kek"))
                {
                    *v = json!({"name": v["name"].clone(), "emptyDir": {}});
                }
            }
        }),
        ("api port", "API port", |d| {
            let c = &mut d["spec"]["template"]["spec"]["containers"][0];
            c["ports"]
                .as_array_mut()
                .expect("ports")
                .retain(|p| p["containerPort"] != json!(8090));
        }),
    ];
    if docs.iter().any(serve) {
        for (what, expect, plant) in serve_faults {
            if let Some(f) = planted("serve", &serve, *plant, expect) {
                failed.push(format!("serve {what}: {f}"));
            }
        }
    } else {
        failed.push("no Deployment serve in the dev build".into());
    }
    let n = seeded.len() + pushgateway_faults.len() + serve_faults.len();
    println!("manifest self-test: {} of {n} seeded faults caught", n - failed.len());
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

/// The secure setup is the rendered one: every workload of every overlay turns local mode off
/// explicitly (the only mode with built-in tenants, tokens and keys); in prod the gateway and serve take
/// their tenants' tokens, and serve its grants KEK, from files of mounted Secrets, and the
/// gateway requires provider signatures with its providers' secrets from a Secret too.
#[test]
pub(crate) fn overlays_never_run_in_local_mode_and_prod_takes_credentials_from_secrets() {
    let mut ignored = Vec::new();
    let (builds, _) = builds(&mut ignored);
    let mut failures = Vec::new();
    for b in &builds {
        for c in &b.containers {
            if c.env.get("TRIBUTARY_LOCAL").map(String::as_str) != Some("0") {
                failures.push(format!(
                    "{}: TRIBUTARY_LOCAL is {:?}, not 0",
                    c.label,
                    c.env.get("TRIBUTARY_LOCAL")
                ));
            }
        }
    }
    let prod: Vec<&Container> = builds
        .iter()
        .filter(|b| b.overlay == "prod")
        .flat_map(|b| &b.containers)
        .collect();
    let mut want = |binary: &str, files: &[&str], literal: &[(&str, &str)]| {
        let found: Vec<&&Container> = prod.iter().filter(|c| c.binary == binary).collect();
        if found.is_empty() {
            failures.push(format!("prod: no {binary} container"));
        }
        for c in found {
            for f in files {
                if !c.secret_files.contains(*f) {
                    failures.push(format!("{}: {f} is not a file of a mounted Secret", c.label));
                }
            }
            for (k, v) in literal {
                if c.env.get(*k).map(String::as_str) != Some(*v) {
                    failures.push(format!("{}: {k} is {:?}, not {v}", c.label, c.env.get(*k)));
                }
            }
        }
    };
    want(
        "ingest",
        &["TENANT_TOKENS_FILE", "TRIBUTARY_CONFIG"],
        &[("REQUIRE_PROVIDER_SIGNATURES", "true")],
    );
    want("serve", &["TENANT_TOKENS_FILE", "GRANTS_KEK_FILE"], &[]);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
