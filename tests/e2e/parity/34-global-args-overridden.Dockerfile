# parity-build-arg: G=from-flag
# parity-build-arg: UNUSED=x
ARG G=global
ARG H=global-h
ARG L=global-l
FROM parity-base
ARG G
ARG H
ARG L=local
ENV G=$G H=$H L=$L
RUN echo $G $H $L > /f
