# parity-label: org.example.cli=yes
# parity-label: in=cli
FROM parity-base
LABEL in=file other=file
