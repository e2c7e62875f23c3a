# ARG values of a base stage: no `|N` prefix in the child's RUN history, but
# still in the environment the child's instructions expand against.
FROM parity-base AS a
ARG X=1
ENV FROM_A=yes
FROM a
ENV Y=${X:-unset}
LABEL x=${X:-unset}
RUN echo $X > /x
