FROM parity-base
ENV X="a\"b" Y='single $quoted' Z=\$literal
ENV W "legacy with 'quotes'"
LABEL "quoted key"='v a l' plain=$Z
