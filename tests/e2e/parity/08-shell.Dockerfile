FROM parity-base
SHELL ["/bin/sh", "-ec"]
CMD echo via custom shell
ENTRYPOINT exec echo entry
RUN echo run > /f
SHELL ["/bin/busybox", "sh", "-c"]
