#!/usr/bin/env bash
# Sample webhooks of each provider, in their documented shapes, posted to the gateway as the
# providers would: a SendGrid batch, Mailgun event-data, SES through SNS-less EventBridge
# shape, Postmark, Mailchimp (form-encoded), Mandrill (mandrill_events form). Event times
# are the demo's fixed time T so a second run repeats the very same events (all duplicates),
# as a provider's retry would. Sourced by dev/demo.sh; needs GATEWAY, T and post().
# shellcheck disable=SC2034
iso() { date -u -d "@$1" +%Y-%m-%dT%H:%M:%SZ; }
naive() { date -u -d "@$1" '+%Y-%m-%d %H:%M:%S'; }
urlenc() { local s="$1" o="" c i; for ((i = 0; i < ${#s}; i++)); do c=${s:i:1}
  case "$c" in [a-zA-Z0-9.~_-]) o+="$c" ;; *) o+=$(printf '%%%02X' "'$c") ;; esac; done; printf '%s' "$o"; }

send_sample_webhooks() { # tenant token
  local tenant="$1" token="$2" i batch=""
  local wh="$GATEWAY/v1/tenants/$tenant/webhooks"
  # SendGrid: one batch of 40 events, every kind that reaches a chain.
  local kinds=(processed delivered open click bounce spamreport unsubscribe group_unsubscribe group_resubscribe deferred)
  for i in $(seq 0 39); do
    local k=${kinds[$((i % 10))]} extra=""
    case "$k" in
      bounce) extra=',"type":"bounce","status":"5.1.1","reason":"550 5.1.1 The email account that you tried to reach does not exist"' ;;
      group_unsubscribe|group_resubscribe) extra=',"asm_group_id":10' ;;
      click) extra=',"url":"https://example.com/spring?utm_source=mail","useragent":"Mozilla/5.0"' ;;
      deferred) extra=',"response":"400 try again later","attempt":"1"' ;;
    esac
    batch+="${batch:+,}{\"email\":\"reader$((i % 13))@example.com\",\"timestamp\":$((T - i)),\"event\":\"$k\",\"sg_event_id\":\"demo-sg-$tenant-$i\",\"sg_message_id\":\"demo-msg-$((i / 4)).filter0001\",\"category\":[\"spring-sale\"]$extra}"
  done
  post "$wh/sendgrid" application/json "[$batch]" "$token"
  # Mailgun: delivered, permanent failure, complaint, unsubscribe (float-second timestamps).
  for k in delivered failed complained unsubscribed; do
    local sev=""; [ "$k" = failed ] && sev=',"severity":"permanent","reason":"bounce","delivery-status":{"code":550,"message":"5.1.1 No such user"}'
    post "$wh/mailgun" application/json "{\"signature\":{\"timestamp\":\"$T\",\"token\":\"demo-$k\",\"signature\":\"0\"},\"event-data\":{\"id\":\"demo-mg-$tenant-$k\",\"timestamp\":$T.25,\"event\":\"$k\",\"recipient\":\"mg-$k@example.org\",\"message\":{\"headers\":{\"message-id\":\"demo-mg@example.org\",\"to\":\"mg-$k@example.org\"}}$sev}}" "$token"
  done
  # SES: a hard bounce naming two recipients (two records) and a delivery (ISO 8601 times).
  local ses_mail="\"mail\":{\"timestamp\":\"$(iso "$T")\",\"messageId\":\"demo-ses-$tenant-1\",\"source\":\"news@example.com\",\"destination\":[\"ses-a@example.net\",\"ses-b@example.net\"]}"
  post "$wh/ses" text/plain "{\"eventType\":\"Bounce\",\"bounce\":{\"bounceType\":\"Permanent\",\"bounceSubType\":\"General\",\"bouncedRecipients\":[{\"emailAddress\":\"ses-a@example.net\"},{\"emailAddress\":\"ses-b@example.net\"}],\"timestamp\":\"$(iso "$T")\",\"feedbackId\":\"demo\"},$ses_mail}" "$token"
  post "$wh/ses" text/plain "{\"eventType\":\"Delivery\",\"delivery\":{\"timestamp\":\"$(iso "$T")\",\"recipients\":[\"ses-c@example.net\"],\"smtpResponse\":\"250 ok\"},\"mail\":{\"timestamp\":\"$(iso "$T")\",\"messageId\":\"demo-ses-$tenant-2\",\"source\":\"news@example.com\",\"destination\":[\"ses-c@example.net\"]}}" "$token"
  # Postmark: a delivery, a hard bounce, an unsubscribe (SubscriptionChange).
  post "$wh/postmark" application/json "{\"RecordType\":\"Delivery\",\"MessageID\":\"demo-pm-$tenant-1\",\"Recipient\":\"pm@example.com\",\"DeliveredAt\":\"$(iso "$T")\",\"MessageStream\":\"outbound\"}" "$token"
  post "$wh/postmark" application/json "{\"RecordType\":\"Bounce\",\"ID\":$((T % 100000)),\"Type\":\"HardBounce\",\"TypeCode\":1,\"MessageID\":\"demo-pm-$tenant-2\",\"Email\":\"pm-bounce@example.com\",\"BouncedAt\":\"$(iso "$T")\",\"Inactive\":true}" "$token"
  post "$wh/postmark" application/json "{\"RecordType\":\"SubscriptionChange\",\"MessageID\":\"demo-pm-$tenant-3\",\"Recipient\":\"pm-unsub@example.com\",\"SuppressSending\":true,\"SuppressionReason\":\"ManualSuppression\",\"ChangedAt\":\"$(iso "$T")\",\"MessageStream\":\"outbound\"}" "$token"
  # Mailchimp: subscribe and profile update (form-encoded, naive date-times).
  local fired; fired=$(urlenc "$(naive "$T")")
  post "$wh/mailchimp" application/x-www-form-urlencoded "type=subscribe&fired_at=$fired&data%5Bid%5D=demo1&data%5Blist_id%5D=news&data%5Bemail%5D=mc-$tenant%40example.com&data%5Bmerges%5D%5BFNAME%5D=Mia" "$token"
  post "$wh/mailchimp" application/x-www-form-urlencoded "type=profile&fired_at=$fired&data%5Bid%5D=demo1&data%5Blist_id%5D=news&data%5Bemail%5D=mc-$tenant%40example.com&data%5Bmerges%5D%5BFNAME%5D=Mia&data%5Bmerges%5D%5BLNAME%5D=Ruiz" "$token"
  # Mandrill: send, hard bounce, unsub in one mandrill_events form.
  local ev="" k
  for k in send hard_bounce unsub; do
    ev+="${ev:+,}{\"event\":\"$k\",\"_id\":\"demo-md-$tenant-$k\",\"ts\":$T,\"msg\":{\"ts\":$T,\"email\":\"md-$k@example.com\",\"_id\":\"demo-md-$tenant-$k\",\"state\":\"sent\"}}"
  done
  post "$wh/mandrill" application/x-www-form-urlencoded "mandrill_events=$(urlenc "[$ev]")" "$token"
}

send_sample_upload() { # tenant token: a CSV of profiles with one broken line
  local tenant="$1" token="$2" i csv="event_id,email,first_name,country,user_id,event_time"$'\n'
  for i in $(seq 1 50); do
    if [ "$i" = 17 ]; then csv+="demo-up-$i,broken-row@example.com"$'\n'; continue; fi
    csv+="demo-up-$tenant-$i,Member$i@Example.com,Member$i,de,m$i,$(iso "$T")"$'\n'
  done
  post "$GATEWAY/v1/tenants/$tenant/uploads/users" text/csv "$csv" "$token"
}
