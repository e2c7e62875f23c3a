FROM parity-base
ENV A=env
ARG A=arg
ENV B=$A
ARG C=1
ARG C=2
RUN echo $A $C > /f
