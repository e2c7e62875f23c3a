# parity-base has CMD ["/bin/sh"]: an ENTRYPOINT in this stage resets it.
FROM parity-base
ENTRYPOINT /bin/echo shell form
