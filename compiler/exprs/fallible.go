package exprs

import (
	"reflect"

	"github.com/expr-lang/expr/ast"
)

// safeCalls are the functions that never fail on arguments of the types
// they take (null excluded: PIPE116 rules it out).
var safeCalls = map[string]bool{
	// Library.
	"coalesce": true, "hash": true, "sha256": true, "md5": true, "mask": true, "merge": true,
	"sha1": true, "sha512": true, "hmac_sha1": true, "hmac_sha256": true, "hmac_sha512": true,
	"to_string": true, "string": true, "unix": true, "unix_milli": true, "without": true,
	// expr builtins.
	"all": true, "any": true, "none": true, "one": true, "filter": true, "map": true, "count": true,
	"sum": true, "len": true, "upper": true, "lower": true, "trim": true, "trimPrefix": true,
	"trimSuffix": true, "hasPrefix": true, "hasSuffix": true, "indexOf": true, "lastIndexOf": true,
	"split": true, "splitAfter": true, "replace": true, "join": true, "keys": true, "values": true,
	"abs": true, "ceil": true, "floor": true, "round": true, "toJSON": true, "type": true,
	"get": true, "concat": true, "reverse": true, "toBase64": true,
}

// cannotFail reports whether evaluating the checked tree can never fail
// on a record of its input type: every value it reads has a known type,
// and it uses only operators and functions that cannot fail on such
// values. It errs on the side of "may fail" (%, list indexes, slices,
// conversions, parsing, a regular expression that is not a literal).
func cannotFail(root ast.Node) bool {
	ok := true
	ast.Walk(&root, visitFunc(func(n *ast.Node) {
		switch x := (*n).(type) {
		case *ast.NilNode, *ast.BoolNode, *ast.IntegerNode, *ast.FloatNode, *ast.StringNode,
			*ast.ArrayNode, *ast.MapNode, *ast.PairNode, *ast.ConditionalNode, *ast.UnaryNode,
			*ast.ChainNode, *ast.PredicateNode, *ast.VariableDeclaratorNode, *ast.SequenceNode,
			*ast.ConstantNode:
		case *ast.IdentifierNode, *ast.PointerNode:
			ok = ok && (*n).Type().Kind() != reflect.Interface
		case *ast.MemberNode:
			if _, name := x.Property.(*ast.StringNode); !name {
				// An index: a list's may be out of range, a map's is null.
				ok = ok && x.Node.Type().Kind() == reflect.Map
			}
			ok = ok && (*n).Type().Kind() != reflect.Interface
		case *ast.BinaryNode:
			switch x.Operator {
			case "%":
				ok = false
			case "matches":
				_, lit := x.Right.(*ast.StringNode)
				ok = ok && lit
			}
		case *ast.CallNode:
			id, isIdent := x.Callee.(*ast.IdentifierNode)
			ok = ok && isIdent && safeCalls[id.Value]
		case *ast.BuiltinNode:
			ok = ok && safeCalls[x.Name]
		default:
			ok = false
		}
	}))
	return ok
}
