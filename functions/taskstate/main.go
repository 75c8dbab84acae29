// Command taskstate is the Lambda function fed by the task, volume and retry
// queues: ECS Task State Changes, EBS Volume Notifications and tether's own
// retry messages, each turned into the volumes to reconcile.
package main

import (
	"os"

	"github.com/tether-ecs/tether/functions/boot"
)

func main() { os.Exit(boot.Main("taskstate")) }
