FROM parity-base
STOPSIGNAL SIGTERM
MAINTAINER someone <someone@example.com>
ONBUILD RUN echo triggered > /onbuild
ONBUILD COPY hello.txt /
