FROM parity-base
VOLUME /data
VOLUME ["/a", "/b c"]
VOLUME /x /y
