package awsmodel

// patternException is a model pattern RE2 cannot express (internal/
// javaregex refuses it; the generated tables carry the reason as noRE2).
type patternException struct {
	// why it has no direct translation, and where the models use it.
	why string
	// equivalent is an RE2 expression, written by hand, that accepts
	// exactly what the Java pattern accepts (given the shape's own length
	// limits where noted). Empty: the pattern is not checked.
	equivalent string
}

// patternExceptions are all the patterns of the generated models that RE2
// cannot express; TestPatternExceptionsAreExactlyTheUntranslatable keeps
// this list equal to what the generator could not translate, and
// TestPatternExceptionEquivalents pins each equivalent's meaning.
var patternExceptions = map[string]patternException{
	`(?i)all|[0-9]{12}`: {
		why: "inline (?i): Java folds ASCII case only, RE2 all of Unicode. SSM AccountId " +
			"(ModifyDocumentPermission AccountIdsToAdd/AccountIdsToRemove).",
		equivalent: `\A(?:[aA][lL][lL]|[0-9]{12})\z`,
	},
	`^(?!\s*$).+`: {
		why: "negative lookahead: a value that is not all whitespace. SSM AlarmName, " +
			"DocumentReviewComment, MetadataKey and others.",
		// At least one character that is neither Java whitespace nor a line
		// terminator, and no line terminator ('.' in Java).
		equivalent: `\A[^\n\r\x{85}\x{2028}\x{2029}]*[^\t\n\x0B\f\r \x{85}\x{2028}\x{2029}][^\n\r\x{85}\x{2028}\x{2029}]*\z`,
	},
	`^.{1,100000}$`: {
		why: "RE2 caps counted repetition at 1000. SSM InstancePropertyFilterValue and " +
			"InstancePropertyStringFilterKey, whose shapes also limit length to 1..100000 " +
			"code points, so the equivalent needs no count.",
		equivalent: `\A[^\n\r\x{85}\x{2028}\x{2029}]+\z`,
	},
	`^https:\/\/[-a-zA-Z0-9@:%._\+~#=]{1,253}\.s3(\.[a-z\d-]{9,16})?\.amazonaws\.com\/.{1,2000}`: {
		why: "RE2 caps counted repetition at 1000. SSM TargetLocationsURL (StartAutomationExecution).",
		// .{1,2000} written as two counts of at most 1000.
		equivalent: `\A(?:https://[\-#%+.0-:=@-Z_a-z~]{1,253}\.s3(\.[\-0-9a-z]{9,16})?\.amazonaws\.com/` +
			`[^\n\r\x{85}\x{2028}\x{2029}]{1,1000}[^\n\r\x{85}\x{2028}\x{2029}]{0,1000})\z`,
	},
}
