package dev.tributary.peer;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.net.IDN;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.time.Instant;
import java.time.LocalDate;
import java.time.LocalDateTime;
import java.time.OffsetDateTime;
import java.time.ZoneOffset;
import java.time.format.DateTimeFormatter;
import java.time.format.DateTimeParseException;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericDatumWriter;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.io.BinaryEncoder;
import org.apache.avro.io.EncoderFactory;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.Headers;
import org.apache.kafka.common.header.internals.RecordHeaders;
import org.apache.kafka.streams.processor.api.Processor;
import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.processor.api.RecordMetadata;
import org.apache.kafka.streams.state.WindowStore;
import org.apache.kafka.streams.state.WindowStoreIterator;

/**
 * Parse, validate, normalize, dedup and encode one raw `mailings` record, as
 * services/mailings + crates/engine do for the canonical `json` source format. Records of
 * another source format go to the DLQ as unknown_source: the bench feeds only `json`.
 */
final class MailingsProcessor implements Processor<byte[], byte[], byte[], byte[]> {
    static final List<String> EVENT_TYPES = List.of(
            "SENT", "DELIVERED", "DEFERRED", "BOUNCED", "DROPPED", "OPENED", "CLICKED", "COMPLAINED", "UNSUBSCRIBED",
            "FAILED");
    static final Map<String, String> SYNONYMS = Map.ofEntries(
            Map.entry("SEND", "SENT"), Map.entry("PROCESSED", "SENT"),
            Map.entry("DELIVERY", "DELIVERED"), Map.entry("DELIVER", "DELIVERED"),
            Map.entry("DEFERRAL", "DEFERRED"), Map.entry("DEFER", "DEFERRED"), Map.entry("DELAYED", "DEFERRED"),
            Map.entry("BOUNCE", "BOUNCED"),
            Map.entry("DROP", "DROPPED"), Map.entry("REJECTED", "DROPPED"), Map.entry("REJECT", "DROPPED"),
            Map.entry("OPEN", "OPENED"), Map.entry("CLICK", "CLICKED"),
            Map.entry("COMPLAINT", "COMPLAINED"), Map.entry("SPAMREPORT", "COMPLAINED"), Map.entry("SPAM", "COMPLAINED"),
            Map.entry("UNSUBSCRIBE", "UNSUBSCRIBED"),
            Map.entry("FAILURE", "FAILED"), Map.entry("FAIL", "FAILED"));
    static final long MIN_EVENT_MICROS = 946_684_800_000_000L;
    static final long MAX_FUTURE_MICROS = 24L * 3600 * 1_000_000;
    static final int MAX_RECORD_BYTES = 1_048_576;
    static final DateTimeFormatter NAIVE = DateTimeFormatter.ofPattern("yyyy-MM-dd HH:mm:ss");
    static final DateTimeFormatter NAIVE_FRACTION = DateTimeFormatter.ofPattern("yyyy-MM-dd HH:mm:ss[.SSSSSSSSS][.SSSSSS][.SSS]");

    private final Schema schema;
    private final Schema.Field[] fields;
    private final Schema eventTypeSchema;
    private final byte[] header;
    private final Set<String> tenants;
    private final long windowMs;
    private final ObjectMapper json = new ObjectMapper();
    private final GenericDatumWriter<GenericRecord> writer;
    private final MessageDigest sha256;
    private final ByteArrayOutputStream out = new ByteArrayOutputStream(512);
    private BinaryEncoder encoder;
    private ProcessorContext<byte[], byte[]> context;
    private WindowStore<String, Long> store;

    MailingsProcessor(Schema schema, int schemaId, Set<String> tenants, long windowMs) {
        this.schema = schema;
        this.fields = schema.getFields().toArray(new Schema.Field[0]);
        this.eventTypeSchema = schema.getField("event_type").schema();
        this.header = new byte[] {0, (byte) (schemaId >>> 24), (byte) (schemaId >>> 16), (byte) (schemaId >>> 8), (byte) schemaId};
        this.tenants = tenants;
        this.windowMs = windowMs;
        this.writer = new GenericDatumWriter<>(schema);
        try {
            this.sha256 = MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    @Override
    public void init(ProcessorContext<byte[], byte[]> context) {
        this.context = context;
        this.store = context.getStateStore(DedupApp.STORE);
    }

    /** A record that goes to the DLQ: its error class and reason. */
    static final class Invalid extends Exception {
        final String cls;

        Invalid(String cls, String reason) {
            super(reason, null, false, false);
            this.cls = cls;
        }

        static Invalid missing(String field) {
            return new Invalid("missing_field", "required field '" + field + "' is missing or empty");
        }

        static Invalid value(String field, String why) {
            return new Invalid("invalid_value", "field '" + field + "': " + why);
        }
    }

    @Override
    public void process(Record<byte[], byte[]> rec) {
        GenericRecord r;
        String tenant;
        String eventId;
        long eventMicros;
        try {
            r = validate(rec);
            tenant = (String) r.get(0);
            eventId = (String) r.get(1);
            eventMicros = (Long) r.get(2);
            if (eventId.isEmpty()) {
                // No identity from the source: a hash of the normalized record without its ingest time.
                long ingested = (Long) r.get(3);
                r.put(3, 0L);
                byte[] h = sha256.digest(encode(r, false));
                r.put(3, ingested);
                eventId = "h" + hex(h, 16);
                r.put(1, eventId);
            }
        } catch (Invalid e) {
            deadLetter(rec, e.cls, e.getMessage());
            return;
        } catch (IOException | RuntimeException e) {
            deadLetter(rec, "malformed", String.valueOf(e.getMessage()));
            return;
        }
        String key = tenant + '\u0000' + eventId;
        long eventMs = eventMicros / 1000;
        try (WindowStoreIterator<Long> it = store.fetch(key, eventMs - windowMs, eventMs + windowMs)) {
            if (it.hasNext()) {
                return; // a duplicate
            }
        }
        store.put(key, eventMs, eventMs);
        byte[] value;
        try {
            value = encode(r, true);
        } catch (IOException e) {
            deadLetter(rec, "malformed", String.valueOf(e.getMessage()));
            return;
        }
        byte[] k = rec.key() != null ? rec.key() : tenant.getBytes(StandardCharsets.UTF_8);
        context.forward(new Record<>(k, value, rec.timestamp(), new RecordHeaders()), "clean");
    }

    private byte[] encode(GenericRecord r, boolean framed) throws IOException {
        out.reset();
        if (framed) {
            out.write(header);
        }
        encoder = EncoderFactory.get().binaryEncoder(out, encoder);
        writer.write(r, encoder);
        encoder.flush();
        return out.toByteArray();
    }

    private void deadLetter(Record<byte[], byte[]> rec, String cls, String reason) {
        Headers h = new RecordHeaders(rec.headers().toArray());
        h.add("error.class", cls.getBytes(StandardCharsets.UTF_8));
        h.add("error.reason", reason.getBytes(StandardCharsets.UTF_8));
        h.add("error.time", Long.toString(nowMicros()).getBytes(StandardCharsets.UTF_8));
        RecordMetadata m = context.recordMetadata().orElse(null);
        if (m != null) {
            h.add("source.topic", m.topic().getBytes(StandardCharsets.UTF_8));
            h.add("source.partition", Integer.toString(m.partition()).getBytes(StandardCharsets.UTF_8));
            h.add("source.offset", Long.toString(m.offset()).getBytes(StandardCharsets.UTF_8));
        }
        context.forward(new Record<>(rec.key(), rec.value(), rec.timestamp(), h), "dlq");
    }

    static long nowMicros() {
        Instant n = Instant.now();
        return n.getEpochSecond() * 1_000_000 + n.getNano() / 1000;
    }

    static String header(Headers h, String name) {
        Header last = h.lastHeader(name);
        return last == null || last.value() == null ? null : new String(last.value(), StandardCharsets.UTF_8);
    }

    // -------------------------------------------------------------------------------------
    // Validation, as crates/engine/src/record.rs (Common::take) and services/mailings.

    GenericRecord validate(Record<byte[], byte[]> rec) throws Invalid {
        byte[] payload = rec.value() == null ? new byte[0] : rec.value();
        if (payload.length > MAX_RECORD_BYTES) {
            throw new Invalid("oversize", payload.length + " bytes exceed max_record_bytes " + MAX_RECORD_BYTES);
        }
        String source = header(rec.headers(), "source");
        if (source != null && !source.equals("json")) {
            throw new Invalid("unknown_source", "the peer reads only source format 'json', not '" + source + "'");
        }
        JsonNode root;
        try {
            root = json.readTree(payload);
        } catch (IOException e) {
            throw new Invalid("malformed", "invalid JSON: " + e.getMessage());
        }
        if (root == null || !root.isObject()) {
            throw new Invalid("malformed", "expected a JSON object");
        }
        ObjectNode o = (ObjectNode) root;
        long now = nowMicros();

        String tenantField = optStr(o, "tenant_id");
        String tenantHeader = header(rec.headers(), "tenant");
        if (tenantHeader != null && tenantField != null && !tenantHeader.trim().equals(tenantField)) {
            throw new Invalid("invalid_tenant", "the 'tenant' header '" + tenantHeader.trim() + "' and the 'tenant_id' field '"
                    + tenantField + "' disagree");
        }
        String tenantRaw = tenantField != null ? tenantField : tenantHeader;
        if (tenantRaw == null) {
            throw new Invalid("invalid_tenant", "no tenant: neither a 'tenant' header nor a 'tenant_id' field");
        }
        String tenant = tenantRaw.trim();
        if (!validTenant(tenant)) {
            throw new Invalid("invalid_tenant", "tenant id '" + tenant + "' does not match ^[a-z0-9][a-z0-9_-]{0,62}$");
        }
        if (!tenants.contains(tenant)) {
            throw new Invalid("unknown_tenant", "tenant '" + tenant + "' is not configured");
        }
        String eventId = optStr(o, "event_id");
        long eventTime = reqTime(o, "event_time", now);
        String givenSha = optStr(o, "email_sha256");
        String emailRaw = optStr(o, "email");
        String email = emailRaw == null ? null : normalizeEmail(emailRaw);
        String emailSha;
        if (email != null) {
            emailSha = hex(sha256.digest(email.getBytes(StandardCharsets.UTF_8)), 32);
        } else if (givenSha != null && givenSha.length() == 64 && givenSha.chars().allMatch(c -> Character.digit(c, 16) >= 0)) {
            emailSha = givenSha.toLowerCase(Locale.ROOT);
        } else if (givenSha != null) {
            throw Invalid.value("email_sha256", "not 64 hex digits");
        } else {
            emailSha = null;
        }
        if (email == null) {
            throw Invalid.missing("email");
        }

        String type = optStr(o, "event_type");
        if (type == null) {
            throw Invalid.missing("event_type");
        }
        String up = type.trim().toUpperCase(Locale.ROOT);
        String canonical = SYNONYMS.getOrDefault(up, up);
        if (!EVENT_TYPES.contains(canonical)) {
            throw Invalid.value("event_type", "'" + type + "' is not one of " + String.join(", ", EVENT_TYPES));
        }
        String bounce = optStr(o, "bounce_class");
        if (bounce != null) {
            bounce = switch (bounce.toLowerCase(Locale.ROOT)) {
                case "hard", "permanent" -> "hard";
                case "soft", "transient", "temporary" -> "soft";
                case "undetermined", "unknown" -> "undetermined";
                default -> throw Invalid.value("bounce_class", "'" + bounce + "' is not hard, soft or undetermined");
            };
        }
        String messageId = optStr(o, "message_id");
        if (messageId == null) {
            throw Invalid.missing("message_id");
        }
        GenericRecord r = new GenericData.Record(schema);
        r.put(0, tenant);
        r.put(1, eventId == null ? "" : eventId);
        r.put(2, eventTime);
        r.put(3, now);
        r.put(4, "json");
        r.put(5, email);
        r.put(6, emailSha);
        r.put(7, messageId);
        r.put(8, optStr(o, "campaign_id"));
        r.put(9, new GenericData.EnumSymbol(eventTypeSchema, canonical));
        r.put(10, optStr(o, "url"));
        r.put(11, optStr(o, "user_agent"));
        r.put(12, optStr(o, "ip"));
        r.put(13, optStr(o, "smtp_response"));
        r.put(14, bounce);
        assert fields.length == 15;
        return r;
    }

    /** A string field: absent, null and blank are absent; numbers and booleans as text. */
    static String optStr(ObjectNode o, String name) throws Invalid {
        JsonNode v = o.get(name);
        if (v == null || v.isNull()) {
            return null;
        }
        if (v.isTextual()) {
            String s = v.textValue().trim();
            return s.isEmpty() ? null : s;
        }
        if (v.isNumber() || v.isBoolean()) {
            return v.asText();
        }
        throw Invalid.value(name, "expected a string, found " + (v.isArray() ? "an array" : "an object"));
    }

    static boolean validTenant(String t) {
        int n = t.length();
        if (n == 0 || n > 63) {
            return false;
        }
        for (int i = 0; i < n; i++) {
            char c = t.charAt(i);
            boolean ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (i > 0 && (c == '_' || c == '-'));
            if (!ok) {
                return false;
            }
        }
        return true;
    }

    static long reqTime(ObjectNode o, String name, long now) throws Invalid {
        JsonNode v = o.get(name);
        if (v == null || v.isNull() || (v.isTextual() && v.textValue().isBlank())) {
            throw Invalid.missing(name);
        }
        Long micros = null;
        if (v.isIntegralNumber()) {
            micros = epochToMicros((double) v.longValue());
        } else if (v.isNumber()) {
            micros = epochToMicros(v.doubleValue());
        } else if (v.isTextual()) {
            micros = parseTime(v.textValue().trim());
        }
        if (micros == null) {
            throw new Invalid("invalid_timestamp", "field '" + name + "': '" + v + "' is not a timestamp");
        }
        if (micros < MIN_EVENT_MICROS) {
            throw new Invalid("invalid_timestamp", "field '" + name + "': lies before 2000-01-01");
        }
        if (micros > now + MAX_FUTURE_MICROS) {
            throw new Invalid("invalid_timestamp", "field '" + name + "': lies more than a day ahead");
        }
        return micros;
    }

    /** Seconds, milliseconds, microseconds or nanoseconds, guessed by size. */
    static long epochToMicros(double x) {
        double a = Math.abs(x);
        if (a < 1e11) {
            return Math.round(x * 1e6);
        } else if (a < 1e14) {
            return Math.round(x * 1e3);
        } else if (a < 1e17) {
            return Math.round(x);
        }
        return Math.round(x / 1e3);
    }

    static Long parseTime(String s) {
        if (s.isEmpty()) {
            return null;
        }
        char c0 = s.charAt(0);
        if ((c0 >= '0' && c0 <= '9' || c0 == '-' || c0 == '.') && s.indexOf(':') < 0 && s.indexOf('-', 1) < 0) {
            try {
                double d = Double.parseDouble(s);
                return Double.isFinite(d) ? epochToMicros(d) : null;
            } catch (NumberFormatException e) {
                // not a number: the date forms below
            }
        }
        try {
            if (s.length() == 19 && s.charAt(10) == ' ') {
                return micros(LocalDateTime.parse(s, NAIVE).toInstant(ZoneOffset.UTC));
            }
            return micros(OffsetDateTime.parse(s, DateTimeFormatter.ISO_OFFSET_DATE_TIME).toInstant());
        } catch (DateTimeParseException e) {
            // the other common forms
        }
        for (DateTimeFormatter f : new DateTimeFormatter[] {DateTimeFormatter.ISO_LOCAL_DATE_TIME, NAIVE_FRACTION}) {
            try {
                return micros(LocalDateTime.parse(s, f).toInstant(ZoneOffset.UTC));
            } catch (DateTimeParseException e) {
                // next
            }
        }
        try {
            return micros(OffsetDateTime.parse(s, DateTimeFormatter.RFC_1123_DATE_TIME).toInstant());
        } catch (DateTimeParseException e) {
            // next
        }
        try {
            return micros(LocalDate.parse(s).atStartOfDay().toInstant(ZoneOffset.UTC));
        } catch (DateTimeParseException e) {
            return null;
        }
    }

    static long micros(Instant i) {
        return i.getEpochSecond() * 1_000_000 + i.getNano() / 1000;
    }

    /** Trimmed, lower-cased, the domain in ASCII (IDNA), checked. */
    static String normalizeEmail(String raw) throws Invalid {
        String t = raw.trim();
        if (t.isEmpty()) {
            throw badEmail(t, "empty address");
        }
        int at = t.lastIndexOf('@');
        if (at < 0) {
            throw badEmail(t, "no '@'");
        }
        String local = t.substring(0, at);
        String domain = t.substring(at + 1);
        if (local.isEmpty() || domain.isEmpty()) {
            throw badEmail(t, "empty local part or domain");
        }
        boolean plain = true;
        for (int i = 0; i < domain.length() && plain; i++) {
            char c = domain.charAt(i);
            plain = (c < 128 && Character.isLetterOrDigit(c)) || c == '.' || c == '-';
        }
        if (!plain) {
            try {
                domain = IDN.toASCII(domain, 0);
            } catch (IllegalArgumentException e) {
                throw badEmail(t, "domain is not a valid international domain name");
            }
        }
        if (domain.indexOf('.') < 0) {
            throw badEmail(t, "domain has no dot");
        }
        String normalized = local.toLowerCase(Locale.ROOT) + '@' + domain.toLowerCase(Locale.ROOT);
        if (!validLocal(normalized, at) || !validDomain(domain)) {
            throw badEmail(t, "not a valid address");
        }
        return normalized;
    }

    static Invalid badEmail(String t, String why) {
        return new Invalid("invalid_email", "'" + (t.length() > 80 ? t.substring(0, 80) : t) + "': " + why);
    }

    /** Dot-atom local part (RFC 5322 atext, UTF-8 allowed), at most 64 characters. */
    static boolean validLocal(String s, int end) {
        if (end > 64 || s.charAt(0) == '.' || s.charAt(end - 1) == '.') {
            return false;
        }
        for (int i = 0; i < end; i++) {
            char c = s.charAt(i);
            boolean ok = c >= 128 || Character.isLetterOrDigit(c) || "!#$%&'*+/=?^_`{|}~-".indexOf(c) >= 0
                    || (c == '.' && s.charAt(i + 1) != '.');
            if (!ok) {
                return false;
            }
        }
        return true;
    }

    /** Labels of letters, digits and inner hyphens, each at most 63, all at most 253. */
    static boolean validDomain(String d) {
        if (d.length() > 253) {
            return false;
        }
        int start = 0;
        for (int i = 0; i <= d.length(); i++) {
            if (i == d.length() || d.charAt(i) == '.') {
                int len = i - start;
                if (len == 0 || len > 63 || d.charAt(start) == '-' || d.charAt(i - 1) == '-') {
                    return false;
                }
                start = i + 1;
            } else {
                char c = d.charAt(i);
                if (!(c < 128 && (Character.isLetterOrDigit(c) || c == '-'))) {
                    return false;
                }
            }
        }
        return true;
    }

    static String hex(byte[] b, int n) {
        char[] digits = "0123456789abcdef".toCharArray();
        char[] out = new char[n * 2];
        for (int i = 0; i < n; i++) {
            out[2 * i] = digits[(b[i] >> 4) & 0xf];
            out[2 * i + 1] = digits[b[i] & 0xf];
        }
        return new String(out);
    }
}
