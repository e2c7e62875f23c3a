# parity-build-arg: B=bee
ARG GLOBAL=g
FROM parity-base
ARG GLOBAL
ARG A=1 B
ARG C=${A}x
ENV A=from-env
RUN echo $A $B $C > /f
ARG D
RUN true
