# shellcheck shell=bash
# PKI of the localcluster, made with openssl (sourced by cluster.sh):
#
#   pki_generate DIR NODE_NAME NODE_IP API_SERVICE_IP
#
# ca                        cluster CA (signs every cert below and, in the controller
#                           manager, CSRs of the certificates API)
# apiserver                 serving: kubernetes[.default[.svc[.cluster.local]]], localhost,
#                           NODE_NAME, API_SERVICE_IP, 127.0.0.1, NODE_IP
# apiserver-kubelet-client  apiserver -> kubelet (system:masters)
# admin                     kubernetes-admin in system:masters
# kube-controller-manager   system:kube-controller-manager
# kube-scheduler            system:kube-scheduler
# kubelet                   client: system:node:NODE_NAME in system:nodes (Node authorizer,
#                           NodeRestriction)
# kubelet-serving           serving: NODE_NAME, NODE_IP
# kube-proxy                system:kube-proxy (bound to system:node-proxier)
# coredns                   system:coredns (bound by cluster.sh to a read-only ClusterRole)
# sa.key / sa.pub           service-account token signing key pair
# front-proxy-ca            aggregation layer: CA of the requestheader client, which the
# front-proxy-client        apiserver presents to extension API servers
#
# TLS keys are ECDSA P-256 (fast to make); the service-account key is RSA 2048.

_pki_log() { echo "localcluster: $*" >&2; }

# _pki_ca DIR NAME CN: self-signed CA.
_pki_ca() {
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1/$2.key" 2>/dev/null || return 1
  openssl req -x509 -new -key "$1/$2.key" -subj "/CN=$3" -days 3650 -sha256 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
    -out "$1/$2.crt"
}

# _pki_cert DIR NAME SUBJECT EKU [SAN] [CA]: key + cert signed by DIR/CA (default ca).
_pki_cert() {
  local dir=$1 name=$2 subj=$3 eku=$4 san=${5:-} ca=${6:-ca}
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/$name.key" 2>/dev/null || return 1
  openssl req -new -key "$dir/$name.key" -subj "$subj" -out "$dir/$name.csr" || return 1
  {
    echo "basicConstraints = critical, CA:FALSE"
    echo "keyUsage = critical, digitalSignature, keyEncipherment"
    echo "extendedKeyUsage = $eku"
    echo "subjectKeyIdentifier = hash"
    echo "authorityKeyIdentifier = keyid"
    [ -z "$san" ] || echo "subjectAltName = $san"
  } >"$dir/$name.ext"
  openssl x509 -req -in "$dir/$name.csr" -CA "$dir/$ca.crt" -CAkey "$dir/$ca.key" -set_serial "0x$(openssl rand -hex 16)" \
    -days 365 -sha256 -extfile "$dir/$name.ext" -out "$dir/$name.crt" 2>/dev/null || return 1
  rm -f "$dir/$name.csr" "$dir/$name.ext"
}

pki_generate() {
  local dir=$1 node=$2 node_ip=$3 svc_ip=$4
  mkdir -p "$dir" && chmod 700 "$dir" || return 1
  (
    umask 077
    _pki_ca "$dir" ca localcluster-ca || exit 1
    _pki_ca "$dir" front-proxy-ca localcluster-front-proxy-ca || exit 1
    _pki_cert "$dir" front-proxy-client "/CN=front-proxy-client" clientAuth "" front-proxy-ca || exit 1
    _pki_cert "$dir" apiserver "/CN=kube-apiserver" serverAuth \
      "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost,DNS:$node,IP:$svc_ip,IP:127.0.0.1,IP:$node_ip" || exit 1
    _pki_cert "$dir" apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth || exit 1
    _pki_cert "$dir" admin "/O=system:masters/CN=kubernetes-admin" clientAuth || exit 1
    _pki_cert "$dir" kube-controller-manager "/CN=system:kube-controller-manager" clientAuth || exit 1
    _pki_cert "$dir" kube-scheduler "/CN=system:kube-scheduler" clientAuth || exit 1
    _pki_cert "$dir" kubelet "/O=system:nodes/CN=system:node:$node" clientAuth || exit 1
    _pki_cert "$dir" kubelet-serving "/O=system:nodes/CN=system:node:$node" serverAuth "DNS:$node,IP:$node_ip" || exit 1
    _pki_cert "$dir" kube-proxy "/CN=system:kube-proxy" clientAuth || exit 1
    _pki_cert "$dir" coredns "/CN=system:coredns" clientAuth || exit 1
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$dir/sa.key" 2>/dev/null || exit 1
    openssl pkey -in "$dir/sa.key" -pubout -out "$dir/sa.pub" || exit 1
  ) || { _pki_log "ERROR: generating the PKI in $dir failed (see the openssl output above)"; return 1; }
}
