chmod +x get-outputs.sh
./get-outputs.sh && source <(./get-outputs.sh)
