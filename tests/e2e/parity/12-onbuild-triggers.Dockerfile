FROM parity-base AS with-triggers
ONBUILD ENV TRIGGERED=yes
ONBUILD RUN echo triggered > /t
FROM with-triggers
RUN cat /t
