ARG TAG=latest
ARG IMG=parity-base
FROM ${IMG}:${TAG}
ARG TAG
USER ${TAG:+1}
VOLUME /v/$TAG
LABEL tag=$TAG
