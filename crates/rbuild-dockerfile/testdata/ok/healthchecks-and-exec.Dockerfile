FROM nginx:alpine
HEALTHCHECK --interval=1m30s --timeout=10s --start-period=5s --start-interval=1s --retries=5 \
  CMD wget -qO- http://localhost/ || exit 1
HEALTHCHECK NONE
ENTRYPOINT []
CMD []
SHELL ["/bin/ash", "-eo", "pipefail", "-c"]
RUN ["/bin/echo", "exec form", "with \"escaped\" quotes"]
EXPOSE 80/tcp 443/udp $EXTRA_PORT
VOLUME /var/cache/nginx
WORKDIR /usr/share/nginx/html
ONBUILD COPY . /usr/share/nginx/html
