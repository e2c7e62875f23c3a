FROM parity-base
HEALTHCHECK --interval=5m --timeout=3s --start-period=1s --retries=3 CMD wget -q -O- http://localhost/ || exit 1
