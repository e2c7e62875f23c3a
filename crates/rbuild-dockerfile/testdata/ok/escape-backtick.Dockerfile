# escape=`

FROM mcr.microsoft.com/windows/nanoserver:ltsc2022
COPY testfile.txt c:\
RUN dir c:\ `
    && echo done
WORKDIR C:\app
