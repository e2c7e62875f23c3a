FROM busybox
ARG VERSION=1.0 \
    COMMIT
ENV APP_HOME=/opt/app \
    PATH="/opt/app/bin:${PATH}" \
    GREETING='hello world'
ENV LEGACY_FORM this value has spaces
LABEL org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision=$COMMIT \
      "quoted key"="quoted value"
MAINTAINER someone@example.com
WORKDIR $APP_HOME
USER 1000:1000
VOLUME ["/data", "/logs"]
VOLUME /cache
STOPSIGNAL SIGQUIT
EXPOSE 80 443 8000-8010/udp
SHELL ["/bin/sh", "-ec"]
CMD echo "$GREETING"
