FROM parity-base
LABEL a=1 "b c"="d e" f="with \"quotes\""
LABEL version=${NOPE:-dflt}
ENV V=2
LABEL "org.example.v"=$V a=replaced
