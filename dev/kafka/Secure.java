// The principals of the local Kafka's SASL_SSL listener and what each may do (KRaft ACLs).
// Run by dev/kafka/run.sh after the broker is up, over the PLAINTEXT listener (whose anonymous
// principal is a super user, on loopback only), as a single-file program on the broker's jars:
//
//   java -cp '<kafka lib>/*' dev/kafka/Secure.java BOOTSTRAP PRINCIPALS_DIR CHAINS [NAMESPACE]
//
// For each principal it keeps a password in PRINCIPALS_DIR/<name>.password (made once, random,
// mode 600), upserts its SCRAM-SHA-512 credential and creates its ACLs. Idempotent. With NAMESPACE, the ACLs name the
// namespaced topics, groups and transactional ids (`<ns>.raw.users`, ...), as the tests' own
// namespaces have them; the credentials are the same.
//
// The rules (DESIGN "Authenticated Kafka"): a chain reads its raw topic and its own changelog
// and writes only its own clean, DLQ, audit and changelog topics; the sink reads the clean topics
// and writes dlq.sink; the gateway writes the raw topics; serve reads the clean topics and
// grants; the CLI (the operator's tool) may do everything, and is the only principal that may
// write `grants`; Airflow's jobs read everything and write only raw.blocklists (an erasure's
// ERASED record goes through the chain). The password files are the only secrets; run.sh
// writes each principal's client settings beside them (<name>.env).

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.security.SecureRandom;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.ScramCredentialInfo;
import org.apache.kafka.clients.admin.ScramMechanism;
import org.apache.kafka.clients.admin.UserScramCredentialAlteration;
import org.apache.kafka.clients.admin.UserScramCredentialUpsertion;
import org.apache.kafka.common.acl.AccessControlEntry;
import org.apache.kafka.common.acl.AclBinding;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.acl.AclPermissionType;
import org.apache.kafka.common.resource.PatternType;
import org.apache.kafka.common.resource.ResourcePattern;
import org.apache.kafka.common.resource.ResourceType;

public class Secure {
  static final List<AclBinding> ACLS = new ArrayList<>();
  static String ns = "";

  static String n(String name) {
    return ns.isEmpty() ? name : ns + "." + name;
  }

  static void allow(String principal, ResourceType type, String name, PatternType pattern, AclOperation... ops) {
    for (AclOperation op : ops) {
      ACLS.add(new AclBinding(new ResourcePattern(type, name, pattern),
          new AccessControlEntry("User:" + principal, "*", op, AclPermissionType.ALLOW)));
    }
  }

  static void topic(String principal, String name, AclOperation... ops) {
    allow(principal, ResourceType.TOPIC, n(name), PatternType.LITERAL, ops);
  }

  static final AclOperation READ = AclOperation.READ, WRITE = AclOperation.WRITE,
      DESCRIBE = AclOperation.DESCRIBE, DESCRIBE_CONFIGS = AclOperation.DESCRIBE_CONFIGS,
      ALL = AclOperation.ALL;

  public static void main(String[] args) throws Exception {
    if (args.length < 3) {
      System.err.println("usage: Secure BOOTSTRAP PRINCIPALS_DIR CHAINS [NAMESPACE]");
      System.exit(2);
    }
    String bootstrap = args[0];
    Path dir = Path.of(args[1]);
    List<String> chains = List.of(args[2].split(","));
    ns = args.length > 3 ? args[3] : "";

    List<String> principals = new ArrayList<>();
    for (String c : chains) {
      String p = "tributary-" + c;
      principals.add(p);
      topic(p, "raw." + c, READ, DESCRIBE);
      topic(p, "changelog." + c, READ, WRITE, DESCRIBE, DESCRIBE_CONFIGS);
      for (String t : List.of("clean.", "dlq.", "audit.")) {
        topic(p, t + c, WRITE, DESCRIBE, DESCRIBE_CONFIGS);
      }
      // Its consumer group and the restore reader's (`tributary-<chain>-restore`).
      allow(p, ResourceType.GROUP, n("tributary-" + c), PatternType.PREFIXED, READ, DESCRIBE);
      allow(p, ResourceType.TRANSACTIONAL_ID, n("tributary-" + c + "-"), PatternType.PREFIXED, WRITE, DESCRIBE);
    }
    principals.add("tributary-sink");
    for (String c : chains) {
      topic("tributary-sink", "clean." + c, READ, DESCRIBE);
    }
    topic("tributary-sink", "dlq.sink", WRITE, DESCRIBE, DESCRIBE_CONFIGS);
    allow("tributary-sink", ResourceType.GROUP, n("tributary-sink"), PatternType.PREFIXED, READ, DESCRIBE);

    principals.add("tributary-ingest");
    for (String c : chains) {
      topic("tributary-ingest", "raw." + c, WRITE, DESCRIBE, DESCRIBE_CONFIGS);
    }

    principals.add("tributary-serve");
    for (String c : chains) {
      topic("tributary-serve", "clean." + c, READ, DESCRIBE);
    }
    topic("tributary-serve", "grants", READ, DESCRIBE);
    allow("tributary-serve", ResourceType.GROUP, n("tributary-serve"), PatternType.PREFIXED, READ, DESCRIBE);

    // The operator's CLI: creates topics, writes grants, replays dead letters, loads data.
    principals.add("tributary-ctl");
    allow("tributary-ctl", ResourceType.CLUSTER, "kafka-cluster", PatternType.LITERAL,
        AclOperation.CREATE, DESCRIBE, DESCRIBE_CONFIGS);
    if (ns.isEmpty()) {
      allow("tributary-ctl", ResourceType.TOPIC, "*", PatternType.LITERAL, ALL);
    } else {
      allow("tributary-ctl", ResourceType.TOPIC, ns + ".", PatternType.PREFIXED, ALL);
    }
    allow("tributary-ctl", ResourceType.GROUP, "*", PatternType.LITERAL, ALL);
    allow("tributary-ctl", ResourceType.TRANSACTIONAL_ID, "*", PatternType.LITERAL, ALL);

    // Airflow's jobs run the CLI too, under a principal that reads everything, writes only the
    // blocklists' raw topic (erasure) and may not write grants.
    principals.add("tributary-airflow");
    allow("tributary-airflow", ResourceType.TOPIC, "*", PatternType.LITERAL, READ, DESCRIBE, DESCRIBE_CONFIGS);
    topic("tributary-airflow", "raw.blocklists", WRITE);
    allow("tributary-airflow", ResourceType.GROUP, "*", PatternType.LITERAL, DESCRIBE);
    allow("tributary-airflow", ResourceType.GROUP, n("tributary-ctl"), PatternType.PREFIXED, READ);

    // KEDA's lag reads (the prod overlay's autoscaler): describes groups and topics only.
    principals.add("tributary-keda");
    allow("tributary-keda", ResourceType.TOPIC, "*", PatternType.LITERAL, DESCRIBE);
    allow("tributary-keda", ResourceType.GROUP, "*", PatternType.LITERAL, DESCRIBE);

    Files.createDirectories(dir);
    Map<String, String> passwords = new TreeMap<>();
    for (String p : principals) {
      passwords.put(p, password(dir, p));
    }

    Properties props = new Properties();
    props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    props.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "30000");
    try (Admin admin = Admin.create(props)) {
      List<UserScramCredentialAlteration> upserts = new ArrayList<>();
      for (Map.Entry<String, String> e : passwords.entrySet()) {
        upserts.add(new UserScramCredentialUpsertion(e.getKey(),
            new ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096), e.getValue()));
      }
      admin.alterUserScramCredentials(upserts).all().get();
      admin.createAcls(ACLS).all().get();
    }
    System.out.println("kafka: " + principals.size() + " SASL principals, " + ACLS.size() + " ACLs"
        + (ns.isEmpty() ? "" : " for namespace " + ns) + "; client settings in " + dir);
  }

  // The principal's password, made on first use and kept in <dir>/<name>.password (mode 600).
  static String password(Path dir, String principal) throws IOException {
    Path file = dir.resolve(principal + ".password");
    if (Files.exists(file)) {
      return Files.readString(file).trim();
    }
    byte[] raw = new byte[18];
    new SecureRandom().nextBytes(raw);
    String pw = HexFormat.of().formatHex(raw);
    Files.writeString(file, pw + "\n");
    Files.setPosixFilePermissions(file, PosixFilePermissions.fromString("rw-------"));
    return pw;
  }
}
