FROM parity-base
ARG K=key
COPY dir/*.txt /w/
COPY hello.* dir/sub /many/
ENV X=${UNDEF} Y=$UNDEF-suffix Z="${UNDEF:+set}"
LABEL $K=value
