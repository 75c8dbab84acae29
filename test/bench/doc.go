// Package bench is `make bench` (test/cmd/tetherbench): tether deployed
// from template.yaml into local AWS worlds on the realistic profile, with
// every request checked against its botocore model and EC2's, ECS's and
// SSM's request-rate buckets on, and the figures issues 9 and 11 ask for
// measured there.
//
// The runs, each in its own world:
//   - single: one service's volume handed to a fresh real instance, one
//     handoff at a time, without the EBS detachVolume event; again in a
//     world that sends it (handoff_ratio_1, handoff_ratio_1_detach_event);
//   - scaling: one service moved back and forth on fake hosts while hosts
//     without tether run 10, then 500, unrelated tasks (the ECS calls a
//     handoff makes must not grow with the cluster);
//   - concurrent: 200 services on 10 instances drained at once onto 10
//     more (handoff_ratio_200, and against the floor the buckets allow);
//   - hosts: scale-ins, drains and dead hosts on real hosts
//     (dead_host_handoff_over_floor_s, scale_in_handoff_ratio);
//   - grow: services on one real host updated to a revision asking for a
//     larger size, timed until the container sees its filesystem grown
//     (grow_online_seconds);
//   - azmove: services whose shared volume has azmove=snapshot, on two
//     real hosts in two AZs, drained into the other AZ one at a time,
//     timed until the mark is read back there, per GiB of the volume
//     (az_move_seconds_per_gib).
//
// Calls are counted per handoff window (from the drain until tether's
// queues are empty again): the world's router journals every call it
// answers; the bench's own clients send through a Meter that counts their
// attempts; the difference is what tether's functions called, throttled
// attempts included. The bench paces its own setup below the world's
// buckets and never raises them.
package bench
