FROM parity-base AS base
ENV APP=/app PATH=/app/bin:$PATH
WORKDIR /app
USER 1000:1000
ENTRYPOINT ["/bin/echo"]
CMD ["default"]
STOPSIGNAL 9
FROM base AS child
# A stage's ENTRYPOINT resets the CMD it inherited from its base stage.
ENTRYPOINT ["/bin/printf", "%s\n"]
FROM child
CMD ["x"]
