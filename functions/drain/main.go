// Command drain is the Lambda function fed by the container instance queue:
// an instance draining, deregistered or disconnected releases the volumes of
// its stopped tasks.
package main

import (
	"os"

	"github.com/tether-ecs/tether/functions/boot"
)

func main() { os.Exit(boot.Main("drain")) }
