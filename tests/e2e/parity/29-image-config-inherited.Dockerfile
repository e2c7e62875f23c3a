# parity-onbuild also sets WORKDIR, ENTRYPOINT, CMD, HEALTHCHECK, SHELL,
# STOPSIGNAL, EXPOSE, VOLUME and labels; a child inherits them and its
# ENTRYPOINT resets the inherited CMD.
FROM parity-onbuild
ENTRYPOINT ["/bin/echo", "child"]
LABEL child=1
