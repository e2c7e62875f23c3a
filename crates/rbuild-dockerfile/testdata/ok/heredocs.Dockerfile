FROM debian:bookworm-slim
RUN <<EOF
set -eu
apt-get update
apt-get install -y --no-install-recommends curl
rm -rf /var/lib/apt/lists/*
EOF
RUN <<-'SCRIPT' bash
	echo "tabs are stripped, $HOME is not expanded by the builder"
	SCRIPT
RUN <<EOF
#!/usr/bin/env python3
print("a script file with an interpreter line")
EOF
COPY <<conf.ini <<"motd" /etc/app/
[server]
port = ${PORT:-8080}
conf.ini
Welcome, $USER
motd
RUN cat <<A >/a.txt && cat <<B >/b.txt
first
A
second
B
ONBUILD RUN <<EOF
echo triggered
EOF
