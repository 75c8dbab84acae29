// Command hosts is the Lambda function fed by the hosts queue: EC2's
// instance state changes and Spot interruption warnings, Auto Scaling's
// termination lifecycle actions for tether's hook, ECS agents that
// disconnect, and its own next passes of holds and watches. It holds
// terminating instances until their volumes are off, drains Spot
// Instances EC2 is about to reclaim, fences (or, opted in, stops) hung
// hosts, and has the reconciler move the volumes of hosts that are gone.
package main

import (
	"os"

	"github.com/tether-ecs/tether/functions/boot"
)

func main() { os.Exit(boot.Main("hosts")) }
