package ec2sim

import (
	"sort"
	"time"

	"github.com/tether-ecs/tether/test/world/awsproto"
)

// XML shapes of EC2's responses. Element names are EC2's (the botocore
// service model's locationName, aws-sdk-go-v2's ec2 deserializers): lists
// are <xxxSet><item>, an empty list is an empty element, absent optional
// scalars are left out.

const ec2Time = "2006-01-02T15:04:05.000Z"

func ts(t time.Time) string { return t.UTC().Format(ec2Time) }

type xmlTag struct {
	Key   string `xml:"key"`
	Value string `xml:"value"`
}

// xmlTagSet is omitted when a resource has no tags, as EC2 does.
type xmlTagSet struct {
	Items []xmlTag `xml:"item"`
}

func tagSet(tags map[string]string) *xmlTagSet {
	if len(tags) == 0 {
		return nil
	}
	keys := make([]string, 0, len(tags))
	for k := range tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	set := &xmlTagSet{}
	for _, k := range keys {
		set.Items = append(set.Items, xmlTag{Key: k, Value: tags[k]})
	}
	return set
}

type xmlAttachment struct {
	VolumeID            string `xml:"volumeId"`
	InstanceID          string `xml:"instanceId"`
	Device              string `xml:"device"`
	Status              string `xml:"status"`
	AttachTime          string `xml:"attachTime"`
	DeleteOnTermination bool   `xml:"deleteOnTermination"`
}

type xmlAttachmentSet struct {
	Items []xmlAttachment `xml:"item"`
}

type xmlVolume struct {
	VolumeID           string           `xml:"volumeId"`
	Size               int32            `xml:"size"`
	SnapshotID         string           `xml:"snapshotId"`
	AvailabilityZone   string           `xml:"availabilityZone"`
	Status             string           `xml:"status"`
	CreateTime         string           `xml:"createTime"`
	Attachments        xmlAttachmentSet `xml:"attachmentSet"`
	Tags               *xmlTagSet       `xml:"tagSet,omitempty"`
	VolumeType         string           `xml:"volumeType"`
	Iops               *int32           `xml:"iops,omitempty"`
	Encrypted          bool             `xml:"encrypted"`
	KmsKeyID           string           `xml:"kmsKeyId,omitempty"`
	MultiAttachEnabled bool             `xml:"multiAttachEnabled"`
	Throughput         *int32           `xml:"throughput,omitempty"`
}

type createVolumeResponse struct {
	awsproto.EC2Metadata
	xmlVolume
}

type describeVolumesResponse struct {
	awsproto.EC2Metadata
	Volumes   xmlVolumeSet `xml:"volumeSet"`
	NextToken string       `xml:"nextToken,omitempty"`
}

type xmlVolumeSet struct {
	Items []xmlVolume `xml:"item"`
}

type attachmentResponse struct {
	awsproto.EC2Metadata
	xmlAttachment
}

type returnResponse struct {
	awsproto.EC2Metadata
	Return bool `xml:"return"`
}

type xmlModification struct {
	VolumeID                   string `xml:"volumeId"`
	ModificationState          string `xml:"modificationState"`
	StatusMessage              string `xml:"statusMessage,omitempty"`
	TargetSize                 int32  `xml:"targetSize"`
	TargetIops                 *int32 `xml:"targetIops,omitempty"`
	TargetVolumeType           string `xml:"targetVolumeType"`
	TargetThroughput           *int32 `xml:"targetThroughput,omitempty"`
	TargetMultiAttachEnabled   bool   `xml:"targetMultiAttachEnabled"`
	OriginalSize               int32  `xml:"originalSize"`
	OriginalIops               *int32 `xml:"originalIops,omitempty"`
	OriginalVolumeType         string `xml:"originalVolumeType"`
	OriginalThroughput         *int32 `xml:"originalThroughput,omitempty"`
	OriginalMultiAttachEnabled bool   `xml:"originalMultiAttachEnabled"`
	Progress                   int64  `xml:"progress"`
	StartTime                  string `xml:"startTime"`
	EndTime                    string `xml:"endTime,omitempty"`
}

type modifyVolumeResponse struct {
	awsproto.EC2Metadata
	Modification xmlModification `xml:"volumeModification"`
}

type describeModificationsResponse struct {
	awsproto.EC2Metadata
	Modifications struct {
		Items []xmlModification `xml:"item"`
	} `xml:"volumeModificationSet"`
	NextToken string `xml:"nextToken,omitempty"`
}

type xmlSnapshot struct {
	SnapshotID   string     `xml:"snapshotId"`
	VolumeID     string     `xml:"volumeId"`
	Status       string     `xml:"status"`
	StartTime    string     `xml:"startTime"`
	Progress     string     `xml:"progress"`
	OwnerID      string     `xml:"ownerId"`
	VolumeSize   int32      `xml:"volumeSize"`
	Description  string     `xml:"description"`
	Encrypted    bool       `xml:"encrypted"`
	KmsKeyID     string     `xml:"kmsKeyId,omitempty"`
	Tags         *xmlTagSet `xml:"tagSet,omitempty"`
	StorageTier  string     `xml:"storageTier"`
	CompletionAt string     `xml:"completionTime,omitempty"`
}

type createSnapshotResponse struct {
	awsproto.EC2Metadata
	xmlSnapshot
}

type describeSnapshotsResponse struct {
	awsproto.EC2Metadata
	Snapshots struct {
		Items []xmlSnapshot `xml:"item"`
	} `xml:"snapshotSet"`
	NextToken string `xml:"nextToken,omitempty"`
}

type xmlInstanceState struct {
	Code int32  `xml:"code"`
	Name string `xml:"name"`
}

type xmlEBSDevice struct {
	VolumeID            string `xml:"volumeId"`
	Status              string `xml:"status"`
	AttachTime          string `xml:"attachTime"`
	DeleteOnTermination bool   `xml:"deleteOnTermination"`
}

type xmlBlockDevice struct {
	DeviceName string       `xml:"deviceName"`
	EBS        xmlEBSDevice `xml:"ebs"`
}

type xmlInstance struct {
	InstanceID     string           `xml:"instanceId"`
	ImageID        string           `xml:"imageId"`
	State          xmlInstanceState `xml:"instanceState"`
	PrivateDNSName string           `xml:"privateDnsName"`
	DNSName        string           `xml:"dnsName"`
	Reason         string           `xml:"reason"`
	StateReason    *xmlStateReason  `xml:"stateReason,omitempty"`
	AmiLaunchIndex int32            `xml:"amiLaunchIndex"`
	InstanceType   string           `xml:"instanceType"`
	// InstanceLifecycle is "spot" for a Spot Instance, absent otherwise.
	InstanceLifecycle string `xml:"instanceLifecycle,omitempty"`
	LaunchTime        string `xml:"launchTime"`
	Placement         struct {
		AvailabilityZone string `xml:"availabilityZone"`
		GroupName        string `xml:"groupName"`
		Tenancy          string `xml:"tenancy"`
	} `xml:"placement"`
	Monitoring struct {
		State string `xml:"state"`
	} `xml:"monitoring"`
	PrivateIP      string `xml:"privateIpAddress,omitempty"`
	Architecture   string `xml:"architecture"`
	RootDeviceType string `xml:"rootDeviceType"`
	RootDeviceName string `xml:"rootDeviceName"`
	BlockDevices   struct {
		Items []xmlBlockDevice `xml:"item"`
	} `xml:"blockDeviceMapping"`
	VirtualizationType string     `xml:"virtualizationType"`
	Tags               *xmlTagSet `xml:"tagSet,omitempty"`
	Hypervisor         string     `xml:"hypervisor"`
	EbsOptimized       bool       `xml:"ebsOptimized"`
}

type xmlReservation struct {
	ReservationID string `xml:"reservationId"`
	OwnerID       string `xml:"ownerId"`
	Groups        struct {
		Items []struct{} `xml:"item"`
	} `xml:"groupSet"`
	Instances struct {
		Items []xmlInstance `xml:"item"`
	} `xml:"instancesSet"`
}

type describeInstancesResponse struct {
	awsproto.EC2Metadata
	Reservations struct {
		Items []xmlReservation `xml:"item"`
	} `xml:"reservationSet"`
	NextToken string `xml:"nextToken,omitempty"`
}

type xmlZone struct {
	ZoneName           string `xml:"zoneName"`
	ZoneState          string `xml:"zoneState"`
	RegionName         string `xml:"regionName"`
	ZoneID             string `xml:"zoneId"`
	ZoneType           string `xml:"zoneType"`
	OptInStatus        string `xml:"optInStatus"`
	GroupName          string `xml:"groupName"`
	NetworkBorderGroup string `xml:"networkBorderGroup"`
	Messages           struct {
		Items []struct{} `xml:"item"`
	} `xml:"messageSet"`
}

type describeZonesResponse struct {
	awsproto.EC2Metadata
	Zones struct {
		Items []xmlZone `xml:"item"`
	} `xml:"availabilityZoneInfo"`
}

type xmlStateReason struct {
	Code    string `xml:"code"`
	Message string `xml:"message"`
}

type xmlStatusDetail struct {
	ImpairedSince string `xml:"impairedSince,omitempty"`
	Name          string `xml:"name"`
	Status        string `xml:"status"`
}

// xmlStatusSummary has no details when the check does not apply (the
// instance is not running).
type xmlStatusSummary struct {
	Details *xmlStatusDetails `xml:"details,omitempty"`
	Status  string            `xml:"status"`
}

type xmlStatusDetails struct {
	Items []xmlStatusDetail `xml:"item"`
}

type xmlInstanceStatus struct {
	AvailabilityZone string `xml:"availabilityZone"`
	Events           struct {
		Items []struct{} `xml:"item"`
	} `xml:"eventsSet"`
	InstanceID     string           `xml:"instanceId"`
	InstanceState  xmlInstanceState `xml:"instanceState"`
	InstanceStatus xmlStatusSummary `xml:"instanceStatus"`
	SystemStatus   xmlStatusSummary `xml:"systemStatus"`
	EBSStatus      xmlStatusSummary `xml:"attachedEbsStatus"`
}

type describeInstanceStatusResponse struct {
	awsproto.EC2Metadata
	Statuses struct {
		Items []xmlInstanceStatus `xml:"item"`
	} `xml:"instanceStatusSet"`
	NextToken string `xml:"nextToken,omitempty"`
}

type xmlStateChange struct {
	InstanceID    string           `xml:"instanceId"`
	CurrentState  xmlInstanceState `xml:"currentState"`
	PreviousState xmlInstanceState `xml:"previousState"`
}

type instanceStateChangeResponse struct {
	awsproto.EC2Metadata
	Instances struct {
		Items []xmlStateChange `xml:"item"`
	} `xml:"instancesSet"`
}
