# parity-onbuild (made by the test) has ONBUILD RUN, ENV and WORKDIR triggers.
FROM parity-onbuild
RUN cat /triggered
