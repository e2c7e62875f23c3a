# escape=`
FROM parity-base
ARG SIG=SIGINT
ARG V=vol
STOPSIGNAL $SIG
VOLUME ["/$V", "/plain"]
WORKDIR /app/
WORKDIR ./sub/../other/.
USER root:root
ONBUILD   RUN   echo   spaced   out
CMD []
ENTRYPOINT []
LABEL path=C:`\dir
