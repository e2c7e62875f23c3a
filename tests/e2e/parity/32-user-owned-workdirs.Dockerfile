FROM parity-base
USER 1000:1000
WORKDIR /bin
WORKDIR /owned/deeper
COPY --chown=1000:1000 hello.txt .
USER 0:0
RUN touch /bin
RUN rm /bin/yes
