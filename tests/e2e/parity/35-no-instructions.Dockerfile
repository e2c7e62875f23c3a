FROM parity-base AS plain
FROM plain
