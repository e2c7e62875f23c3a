from parity-base AS Builder
env a=b EMPTY= quoted="" spaced=" x "
label empty="" "k"="v"
FROM builder
ARG PORTS="80 443/udp"
ARG NOVAL
expose $PORTS "8080"
volume /plain "/q"
ENV USES=${NOVAL}x
# a comment inside a continuation
RUN echo one \
# comment line
    two > /out
cmd ["x"]
