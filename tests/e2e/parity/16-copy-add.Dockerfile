FROM parity-base
COPY hello.txt /
COPY dir /dir/
COPY --chown=1:2 hello.txt /owned.txt
COPY --chmod=0755 --chown=3 hello.txt /exec.txt
ADD --chown=4:4 archive.tar /owned-unpacked/
ADD archive.tar /unpacked/
ADD hello.txt dir/a.txt /multi/
WORKDIR /w
COPY hello.txt relative
