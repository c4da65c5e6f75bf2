package dev.tributary.peer;

import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Arrays;
import java.util.HashSet;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.CountDownLatch;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import org.apache.avro.Schema;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.state.Stores;

/**
 * The Kafka Streams peer of `make bench`: does the work of the `mailings` chain service
 * (services/mailings over crates/engine) on the canonical JSON source format.
 *
 * <p>Per record: parse the JSON object, validate and normalize the same fields (tenant from
 * the payload or the `tenant` header, event time in the common forms, email trimmed,
 * lower-cased and its domain in ASCII, its SHA-256, event type and its ESP synonyms, bounce
 * class, message id), drop duplicates by tenant + event id in a persistent (RocksDB) window
 * store of 7 days with a changelog, encode the unified record with Apache Avro's Java
 * library behind the Confluent 5-byte header (magic 0, schema id), produce to the clean
 * topic; anything invalid goes to the DLQ topic with the original key, value and headers
 * plus error.class, error.reason and source.topic/partition/offset. processing.guarantee is
 * exactly_once_v2, commit interval 100 ms (the chain's COMMIT_INTERVAL).
 *
 * <p>Settings from the environment: KAFKA_BOOTSTRAP, SCHEMA_REGISTRY_URL (Confluent API),
 * PEER_APP_ID, PEER_RAW, PEER_CLEAN, PEER_DLQ, PEER_SCHEMA (path of the .avsc), PEER_SUBJECT,
 * PEER_STATE_DIR, TENANTS (default acme,globex,initech), PEER_THREADS (default 1).
 */
public final class DedupApp {
    static final String STORE = "dedup";
    static final long WINDOW_MS = Duration.ofDays(7).toMillis();

    public static void main(String[] args) throws Exception {
        String bootstrap = env("KAFKA_BOOTSTRAP", "127.0.0.1:9092");
        String registry = env("SCHEMA_REGISTRY_URL", "http://localhost:8081/apis/ccompat/v7");
        String appId = env("PEER_APP_ID", "kstreams-dedup");
        String raw = env("PEER_RAW", "raw.mailings");
        String clean = env("PEER_CLEAN", "peer.clean.mailings");
        String dlq = env("PEER_DLQ", "peer.dlq.mailings");
        String schemaText = Files.readString(Path.of(env("PEER_SCHEMA", "schemas/mailings.avsc")));
        String subject = env("PEER_SUBJECT", clean + "-value");
        Set<String> tenants = new HashSet<>(Arrays.asList(env("TENANTS", "acme,globex,initech").split(",")));

        Schema schema = new Schema.Parser().parse(schemaText);
        int schemaId = register(registry, subject, schemaText);

        Topology topology = new Topology();
        topology.addSource("raw", Serdes.ByteArray().deserializer(), Serdes.ByteArray().deserializer(), raw);
        topology.addProcessor("mailings", () -> new MailingsProcessor(schema, schemaId, tenants, WINDOW_MS), "raw");
        topology.addStateStore(
                Stores.windowStoreBuilder(
                        Stores.persistentWindowStore(STORE, Duration.ofMillis(WINDOW_MS), Duration.ofMillis(WINDOW_MS), false),
                        Serdes.String(),
                        Serdes.Long()),
                "mailings");
        topology.addSink("clean", clean, Serdes.ByteArray().serializer(), Serdes.ByteArray().serializer(), "mailings");
        topology.addSink("dlq", dlq, Serdes.ByteArray().serializer(), Serdes.ByteArray().serializer(), "mailings");

        Properties p = new Properties();
        p.put(StreamsConfig.APPLICATION_ID_CONFIG, appId);
        p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
        p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 100);
        p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, Integer.parseInt(env("PEER_THREADS", "1")));
        p.put(StreamsConfig.STATE_DIR_CONFIG, env("PEER_STATE_DIR", System.getProperty("java.io.tmpdir") + "/kstreams-dedup"));
        p.put(StreamsConfig.REPLICATION_FACTOR_CONFIG, 1);
        // The chain reads from the start of a new topic; so does the peer.
        p.put(StreamsConfig.consumerPrefix("auto.offset.reset"), "earliest");
        // The same producer settings as the chain service's (zstd, small linger).
        p.put(StreamsConfig.producerPrefix("compression.type"), "zstd");
        p.put(StreamsConfig.producerPrefix("linger.ms"), 5);

        KafkaStreams streams = new KafkaStreams(topology, p);
        CountDownLatch done = new CountDownLatch(1);
        streams.setStateListener((now, before) -> {
            if (now == KafkaStreams.State.ERROR || now == KafkaStreams.State.NOT_RUNNING) {
                done.countDown();
            }
        });
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            streams.close(Duration.ofSeconds(20));
            done.countDown();
        }));
        streams.start();
        done.await();
        streams.close(Duration.ofSeconds(20));
    }

    static String env(String name, String dflt) {
        String v = System.getenv(name);
        return v == null || v.isEmpty() ? dflt : v;
    }

    /** Registers the schema under the subject (Confluent API) and returns its id. */
    static int register(String registry, String subject, String schema) throws Exception {
        String body = "{\"schema\":" + jsonString(schema) + "}";
        HttpRequest req = HttpRequest.newBuilder(URI.create(registry + "/subjects/" + subject + "/versions"))
                .header("Content-Type", "application/vnd.schemaregistry.v1+json")
                .POST(HttpRequest.BodyPublishers.ofString(body, StandardCharsets.UTF_8))
                .build();
        HttpResponse<String> resp = HttpClient.newHttpClient().send(req, HttpResponse.BodyHandlers.ofString());
        Matcher m = Pattern.compile("\"id\"\\s*:\\s*(\\d+)").matcher(resp.body());
        if (resp.statusCode() / 100 != 2 || !m.find()) {
            throw new IllegalStateException("registering " + subject + ": HTTP " + resp.statusCode() + " " + resp.body());
        }
        return Integer.parseInt(m.group(1));
    }

    static String jsonString(String s) {
        StringBuilder b = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            switch (c) {
                case '"' -> b.append("\\\"");
                case '\\' -> b.append("\\\\");
                case '\n' -> b.append("\\n");
                case '\r' -> b.append("\\r");
                case '\t' -> b.append("\\t");
                default -> {
                    if (c < 0x20) {
                        b.append(String.format("\\u%04x", (int) c));
                    } else {
                        b.append(c);
                    }
                }
            }
        }
        return b.append('"').toString();
    }
}
