#!/usr/bin/env bash
# Installs the Debian packages mailwire's tests use: tshark (oracle), tcpdump and tcptrace (lab
# captures, benchmarks), Postfix (the lab's real MTA), iproute2/iptables (the lab's namespaces and
# faults) and Chromium (renders the HTML report). Idempotent; needs root.
set -euo pipefail
pkgs=(tshark tcpdump tcptrace postfix iproute2 iptables procps chromium chromium-driver)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
