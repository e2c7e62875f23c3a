FROM parity-base
COPY hello.txt /
COPY dir /dir/
COPY --chown=1:2 hello.txt /owned.txt
ADD archive.tar /unpacked/
ADD hello.txt dir/a.txt /multi/
WORKDIR /w
COPY hello.txt relative
