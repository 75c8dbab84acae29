// Command sweep is the Lambda function the schedule invokes every minute: it
// reconciles every tether volume of the cluster, repairing whatever lost or
// failed events left behind.
package main

import (
	"os"

	"github.com/tether-ecs/tether/functions/boot"
)

func main() { os.Exit(boot.Main("sweep")) }
