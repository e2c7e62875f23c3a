FROM parity-base
ENV A=1 B="two words" C=three\ words
ENV D ${A}-legacy form
ENV PATH=/opt/bin:$PATH
ENV A=override E=$A F=${UNSET:-default}
