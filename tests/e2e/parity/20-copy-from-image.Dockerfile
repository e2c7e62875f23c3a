FROM parity-base AS a
RUN echo a > /a
FROM parity-base
COPY --from=0 /a /
COPY --from=parity-base /bin/busybox /bb
