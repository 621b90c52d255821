#!/usr/bin/env bash
# A throwaway certificate authority and a server certificate it signed, for
# tests that need real TLS on loopback (Azurite over HTTPS, the fake Entra ID
# token endpoint in tests/tools/fake_entra.py). Nothing here is a secret and
# nothing is installed system-wide: a client trusts the CA only when told to
# (SSL_CERT_FILE=DIR/ca.pem for valerix-backup, REQUESTS_CA_BUNDLE for
# Python's requests).
#
#   test-ca.sh DIR    make, in DIR (created if missing):
#                       ca.pem      the CA certificate (the trust anchor)
#                       ca.key      its key
#                       server.pem  the server certificate, for 127.0.0.1,
#                                   ::1 and localhost (subjectAltName), chain
#                                   of one, issued by ca.pem
#                       server.key  its key (unencrypted PKCS#8)
#                     and print DIR. Idempotent: a DIR that already holds a
#                     matching set that is valid for another day is kept
#                     as is. Concurrent calls on one DIR are serialized.
#
# EC P-256 keys (generated in milliseconds), SHA-256 signatures, X.509 v3
# with the extensions webpki (rustls), OpenSSL and Node check: the CA has
# basicConstraints CA:TRUE and keyCertSign; the server certificate is an end
# entity with serverAuth and its names in subjectAltName (the common name is
# not looked at).
set -euo pipefail

dir=${1:?usage: test-ca.sh DIR}
command -v openssl >/dev/null ||
  { echo "test-ca.sh: openssl is missing (apt-get install openssl)" >&2; exit 1; }
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

exec 9>"$dir/.lock"
flock 9

valid() {
  local f
  for f in ca.pem ca.key server.pem server.key; do [ -s "$dir/$f" ] || return 1; done
  openssl verify -CAfile "$dir/ca.pem" "$dir/server.pem" >/dev/null 2>&1 || return 1
  openssl x509 -in "$dir/ca.pem" -noout -checkend 86400 >/dev/null 2>&1 || return 1
  openssl x509 -in "$dir/server.pem" -noout -checkend 86400 >/dev/null 2>&1 || return 1
  # The key belongs to the certificate.
  [ "$(openssl pkey -in "$dir/server.key" -pubout 2>/dev/null)" = \
    "$(openssl x509 -in "$dir/server.pem" -noout -pubkey 2>/dev/null)" ]
}

if valid; then
  echo "$dir"
  exit 0
fi

tmp=$(mktemp -d "$dir/.new.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"

cat >ca.cnf <<'EOF'
[req]
distinguished_name = dn
prompt = no
x509_extensions = v3_ca
[dn]
CN = valerix-backup test CA (throwaway)
[v3_ca]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
EOF

cat >server.cnf <<'EOF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = 127.0.0.1
[v3_server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, IP:::1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
EOF

q() { "$@" >/dev/null 2>err.txt || { cat err.txt >&2; echo "test-ca.sh: $1 failed" >&2; exit 1; }; }

q openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ca.key
# A name of its own: two of these CAs are strangers to each other (a client
# trusting one reports the other's certificates as of an unknown issuer, not
# as badly signed by a namesake).
q openssl req -new -x509 -config ca.cnf -key ca.key -sha256 -days 3650 \
  -subj "/CN=valerix-backup test CA (throwaway) $(openssl rand -hex 6)" \
  -set_serial "0x$(openssl rand -hex 16)" -out ca.pem
q openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out server.key
q openssl req -new -config server.cnf -key server.key -out server.csr
q openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key \
  -set_serial "0x$(openssl rand -hex 16)" -days 825 -sha256 \
  -extfile server.cnf -extensions v3_server -out server.pem
q openssl verify -CAfile ca.pem server.pem
chmod 0644 ca.pem server.pem
chmod 0600 ca.key server.key

# Keys first, then certificates: a reader that checks the set sees either the
# old one or the new one complete (under the lock in any case).
for f in ca.key server.key ca.pem server.pem; do mv -f "$f" "$dir/$f"; done
echo "$dir"
