chmod +x drain-instance.sh
./drain-instance.sh
