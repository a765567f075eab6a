#!/usr/bin/env bash
# Usage: deploy/local/tls.sh DIR
#
# Makes, with openssl, a certificate authority of its own and a server certificate it signed for
# localhost and 127.0.0.1, in DIR (once: files already there are kept):
#   ca.pem, ca.key            the authority; clients trust ca.pem (ssl.ca.location, sslrootcert)
#   server.pem, server.key    the server's certificate and unencrypted PKCS#8 key (Postgres)
#   server-keystore.pem       key then certificate in one file: a Kafka PEM keystore
# For tests and local development only: the keys are not protected. services.sh gives the test
# broker's SASL_SSL listener .local/tls; a test that wants a certificate nobody trusts makes a
# second authority in a folder of its own.
set -euo pipefail
[ $# -eq 1 ] || { sed -n 2p "$0" | sed 's/^# //' >&2; exit 2; }
dir=$1
mkdir -p "$dir"
cd "$dir"
[ -s server-keystore.pem ] && [ -s ca.pem ] && exit 0

umask 077
openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 -keyout ca.key -out ca.pem \
    -subj "/CN=allocation-processor test CA $(date +%s%N)" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -sha256 -keyout server.key -out server.csr \
    -subj "/CN=localhost" 2>/dev/null
cat >server.ext <<'EXT'
basicConstraints = CA:FALSE
keyUsage = digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1, DNS:127.0.0.1
EXT
openssl x509 -req -sha256 -days 3650 -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
    -extfile server.ext -out server.pem 2>/dev/null
cat server.key server.pem >server-keystore.pem.tmp
mv server-keystore.pem.tmp server-keystore.pem
rm -f server.csr server.ext ca.srl
chmod 644 ca.pem server.pem
