package ssmsim

import (
	"context"
	"encoding/json"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/tether-ecs/tether/test/world/awsproto"
)

// ListDocuments, DescribeDocument and GetDocument over the account's
// documents and AWS's (shapes: the SSM service model's DocumentIdentifier,
// DocumentDescription, GetDocumentResult). Every document here is a
// Command document at version 1, Active.

type wireTag struct{ Key, Value string }

type wireDocumentIdentifier struct {
	Name            string
	CreatedDate     *epoch
	Owner           string
	PlatformTypes   []string
	DocumentVersion string
	DocumentType    string
	SchemaVersion   string
	DocumentFormat  string
	Tags            []wireTag
}

type wireDocumentParameter struct {
	Name         string
	Type         string
	Description  string
	DefaultValue *string `json:",omitempty"`
}

type wireDocumentDescription struct {
	Hash            string
	HashType        string
	Name            string
	Owner           string
	CreatedDate     *epoch
	Status          string
	DocumentVersion string
	Description     string
	Parameters      []wireDocumentParameter
	PlatformTypes   []string
	DocumentType    string
	SchemaVersion   string
	LatestVersion   string
	DefaultVersion  string
	DocumentFormat  string
	Tags            []wireTag
}

const documentVersion = "1"

func (d *document) identifier() wireDocumentIdentifier {
	return wireDocumentIdentifier{Name: d.name, CreatedDate: epochOf(d.created), Owner: d.owner, PlatformTypes: d.platforms(),
		DocumentVersion: documentVersion, DocumentType: "Command", SchemaVersion: d.schemaVersion, DocumentFormat: d.format,
		Tags: []wireTag{}}
}

func (d *document) describe() wireDocumentDescription {
	out := wireDocumentDescription{Hash: d.hash(), HashType: "Sha256", Name: d.name, Owner: d.owner, CreatedDate: epochOf(d.created),
		Status: "Active", DocumentVersion: documentVersion, Description: d.description, Parameters: []wireDocumentParameter{},
		PlatformTypes: d.platforms(), DocumentType: "Command", SchemaVersion: d.schemaVersion, LatestVersion: documentVersion,
		DefaultVersion: documentVersion, DocumentFormat: d.format, Tags: []wireTag{}}
	for _, name := range d.order {
		p := d.params[name]
		wp := wireDocumentParameter{Name: name, Type: p.Type, Description: p.Description}
		if p.hasDefault {
			v := strings.Join(values(p.Default), ",")
			wp.DefaultValue = &v
		}
		out.Parameters = append(out.Parameters, wp)
	}
	return out
}

// findDocument resolves a name and version as DescribeDocument and
// GetDocument do.
func (s *Server) findDocument(name, version, versionName string) (*document, error) {
	d := s.documents[name]
	if d == nil {
		return nil, awsproto.BadRequest("InvalidDocument", "The specified document does not exist.")
	}
	switch version {
	case "", "$DEFAULT", "$LATEST", documentVersion:
	default:
		return nil, awsproto.BadRequest("InvalidDocumentVersion", "The document version is not valid or does not exist.")
	}
	if versionName != "" {
		return nil, awsproto.BadRequest("InvalidDocumentVersion", "The document version is not valid or does not exist.")
	}
	return d, nil
}

func (s *Server) describeDocument(_ context.Context, body []byte) (any, error) {
	var req struct{ Name, DocumentVersion, VersionName string }
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d, err := s.findDocument(req.Name, req.DocumentVersion, req.VersionName)
	if err != nil {
		return nil, err
	}
	return &struct{ Document wireDocumentDescription }{d.describe()}, nil
}

func (s *Server) getDocument(_ context.Context, body []byte) (any, error) {
	var req struct{ Name, DocumentVersion, VersionName, DocumentFormat string }
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	s.mu.Lock()
	d, err := s.findDocument(req.Name, req.DocumentVersion, req.VersionName)
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	content, format := d.raw, d.format
	if req.DocumentFormat != "" && req.DocumentFormat != d.format {
		var generic any
		if err := yaml.Unmarshal([]byte(d.raw), &generic); err != nil {
			return nil, err
		}
		var buf []byte
		switch req.DocumentFormat {
		case "JSON":
			buf, err = json.MarshalIndent(generic, "", "  ")
		case "YAML":
			buf, err = yaml.Marshal(generic)
		default:
			return nil, awsproto.BadRequest("ValidationException", "DocumentFormat %s is not valid for a Command document", req.DocumentFormat)
		}
		if err != nil {
			return nil, err
		}
		content, format = string(buf), req.DocumentFormat
	}
	return &struct {
		Name, DocumentVersion, Status, Content, DocumentType, DocumentFormat string
	}{d.name, documentVersion, "Active", content, "Command", format}, nil
}

type documentFilter struct {
	Key    string
	Values []string
}

func (s *Server) listDocuments(_ context.Context, body []byte) (any, error) {
	var req struct {
		DocumentFilterList []struct {
			Key   string `json:"key"`
			Value string `json:"value"`
		}
		Filters    []documentFilter
		MaxResults *int
		NextToken  string
	}
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	if req.MaxResults != nil && (*req.MaxResults < 1 || *req.MaxResults > 50) {
		return nil, awsproto.BadRequest("ValidationException", "1 validation error detected: Value '%d' at 'maxResults' failed to satisfy constraint: Member must have value between 1 and 50", *req.MaxResults)
	}
	filters := req.Filters
	for _, f := range req.DocumentFilterList {
		filters = append(filters, documentFilter{Key: f.Key, Values: []string{f.Value}})
	}
	for _, f := range filters {
		switch {
		case f.Key == "Owner" && len(f.Values) != 1:
			// "Note that only one Owner can be specified in a request."
			// (DocumentKeyValuesFilter); the message is moto's.
			return nil, awsproto.BadRequest("ValidationException", "Owner filter can only have one value.")
		case f.Key == "Owner" && !slices.Contains([]string{"Self", "Amazon", "Private", "Public", "ThirdParty", "All"}, f.Values[0]):
			return nil, awsproto.BadRequest("ValidationException", "Owner filter value %s is not valid", f.Values[0])
		case slices.Contains([]string{"Name", "Owner", "PlatformTypes", "DocumentType", "TargetType", "SearchKeyword"}, f.Key),
			strings.HasPrefix(f.Key, "tag:"):
		default:
			return nil, awsproto.BadRequest("InvalidFilterKey", "The filter key %s is not valid", f.Key)
		}
	}
	s.mu.Lock()
	names := make([]string, 0, len(s.documents))
	for n := range s.documents {
		names = append(names, n)
	}
	slices.Sort(names)
	list := []wireDocumentIdentifier{}
	for _, n := range names {
		d := s.documents[n]
		if s.documentMatches(d, filters) {
			list = append(list, d.identifier())
		}
	}
	s.mu.Unlock()
	page, next, err := paginate(list, req.MaxResults, 50, req.NextToken)
	if err != nil {
		return nil, err
	}
	return &struct {
		DocumentIdentifiers []wireDocumentIdentifier
		NextToken           string `json:",omitempty"`
	}{page, next}, nil
}

// documentMatches applies ListDocuments' filters: every key must match,
// any of a key's values may (DocumentKeyValuesFilter).
func (s *Server) documentMatches(d *document, filters []documentFilter) bool {
	for _, f := range filters {
		ok := false
		for _, v := range f.Values {
			switch f.Key {
			case "Name":
				ok = ok || strings.HasPrefix(d.name, v) // "you can use a name prefix"
			case "SearchKeyword":
				ok = ok || strings.Contains(d.name, v)
			case "DocumentType":
				ok = ok || v == "Command"
			case "PlatformTypes":
				ok = ok || slices.Contains(d.platforms(), v)
			case "Owner":
				switch v {
				case "All":
					ok = true
				case "Self":
					ok = d.owner == s.cfg.Account
				case "Amazon":
					ok = d.owner == ownerAmazon
				case "Private": // owned by the account or shared with it
					ok = d.owner != ownerAmazon
				}
			}
			// tag:*, TargetType: no document here has tags or a target type.
		}
		if !ok {
			return false
		}
	}
	return true
}
