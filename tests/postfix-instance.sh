#!/usr/bin/env bash
# Starts a throwaway Postfix 3.x submission instance on loopback for tests/bench.sh, the
# comparison the performance issue asks for: STARTTLS (TLS 1.3, ECDSA P-256), AUTH PLAIN against
# a sasldb, queue files fsynced before 250 (Postfix's default), mail then discarded.
#
#   tests/postfix-instance.sh start DIR PORT   # prints the master's pid
#   tests/postfix-instance.sh stop DIR
#
# Everything lives under DIR (config, queue, sasldb, certificate); /etc/postfix is not touched.
# Needs root and the Debian packages postfix, sasl2-bin and libsasl2-modules.
set -euo pipefail
action=$1 dir=$2
etc=$dir/etc

case "$action" in
start)
  port=$3
  rm -rf "$dir"; mkdir -p "$etc" "$dir/queue" "$dir/data" "$etc/sasl"
  # Postfix's daemons run as the postfix user: every directory above the queue must let it in.
  chmod 755 "$dir"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=localhost -keyout "$etc/key.pem" -out "$etc/cert.pem" 2>/dev/null
  cp /etc/postfix/master.cf "$etc/master.cf"
  # The submission listener; smtpd runs unchained so it can read the sasldb under DIR.
  cat >> "$etc/master.cf" <<CF
127.0.0.1:$port inet n - n - - smtpd
  -o syslog_name=postfix-bench/submission
  -o smtpd_tls_security_level=encrypt
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_recipient_restrictions=permit_sasl_authenticated,reject
CF
  cat > "$etc/main.cf" <<CF
compatibility_level = 3.6
queue_directory = $dir/queue
data_directory = $dir/data
myhostname = localhost
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
# only the submission listener above: no port 25
master_service_disable = smtp.inet
default_transport = discard:benchmark
local_transport = discard:benchmark
maillog_file = $dir/maillog
maillog_file_prefixes = $dir
smtpd_tls_cert_file = $etc/cert.pem
smtpd_tls_key_file = $etc/key.pem
smtpd_tls_protocols = >=TLSv1.3
smtpd_sasl_type = cyrus
# Debian's Cyrus reads config_directory/sasl/smtpd.conf whatever cyrus_sasl_config_path says
cyrus_sasl_config_path = $etc/sasl
smtpd_sasl_local_domain = localhost
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
smtpd_client_message_rate_limit = 0
smtpd_client_recipient_rate_limit = 0
smtpd_client_new_tls_session_rate_limit = 0
default_process_limit = 1200
smtpd_soft_error_limit = 1000
smtpd_hard_error_limit = 1000
CF
  cat > "$etc/sasl/smtpd.conf" <<CF
pwcheck_method: auxprop
auxprop_plugin: sasldb
mech_list: PLAIN
sasldb_path: $dir/sasldb2
CF
  # Outside etc: postfix check wants everything there owned by root; smtpd reads it as postfix.
  echo s3cret | saslpasswd2 -p -c -f "$dir/sasldb2" -u localhost alice
  chown postfix "$dir/sasldb2"
  postfix -c "$etc" set-permissions >/dev/null 2>&1 || true
  # Postfix reports to syslog, or to stderr only on a terminal: script(1) gives it one.
  script -qec "postfix -c $etc check" /dev/null >&2
  script -qec "postfix -c $etc start" /dev/null >/dev/null
  for _ in $(seq 100); do
    if [ -s "$dir/queue/pid/master.pid" ] && (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      tr -d ' ' < "$dir/queue/pid/master.pid"
      exit 0
    fi
    sleep 0.1
  done
  echo "postfix did not start listening on 127.0.0.1:$port; see $dir/maillog" >&2
  tail -5 "$dir/maillog" >&2 2>/dev/null || true
  exit 1
  ;;
stop)
  postfix -c "$etc" stop >/dev/null 2>&1 || true
  ;;
esac
