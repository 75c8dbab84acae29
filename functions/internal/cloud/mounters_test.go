package cloud

import (
	"slices"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"
)

// A task volume's mounters are the containers with a mountPoint of it, in
// definition order, with their user as written; essential unless false.
func TestMountersOf(t *testing.T) {
	mp := func(vols ...string) []ecstypes.MountPoint {
		var out []ecstypes.MountPoint
		for _, v := range vols {
			out = append(out, ecstypes.MountPoint{SourceVolume: aws.String(v), ContainerPath: aws.String("/" + v)})
		}
		return out
	}
	defs := []ecstypes.ContainerDefinition{
		{Name: aws.String("init"), User: aws.String("0"), Essential: aws.Bool(false), MountPoints: mp("data")},
		{Name: aws.String("app"), User: aws.String("1000:1000"), MountPoints: mp("logs", "data")},
		{Name: aws.String("proxy"), User: aws.String("nginx"), MountPoints: mp("logs")},
		{Name: aws.String("idle")},
	}
	got := mountersOf(defs, "data")
	want := []Container{{Name: "init", User: "0"}, {Name: "app", User: "1000:1000", Essential: true}}
	if !slices.Equal(got, want) {
		t.Errorf("mounters of data %+v, want %+v", got, want)
	}
	if got := mountersOf(defs, "none"); len(got) != 0 {
		t.Errorf("mounters of an unmounted volume %+v", got)
	}
}
