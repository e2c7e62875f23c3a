ARG VERSION=1.0
ARG REGISTRY=docker.io
FROM ${REGISTRY}/library/busybox:latest AS base
# VERSION is not visible here until it is re-declared
RUN echo "before: $VERSION"
ARG VERSION
RUN echo "after: $VERSION"
ARG LOCAL=local-${VERSION}
ENV VERSION=env-wins
RUN echo $VERSION $LOCAL

FROM base AS second
ARG TARGETPLATFORM
RUN echo building for $TARGETPLATFORM
COPY --from=0 /etc/hostname /copied
RUN --mount=type=bind,from=base,target=/mnt cat /mnt/etc/hostname
