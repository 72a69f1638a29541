// The Jinja subset (src/chat/jinja.*): each construct with its expected output (as jinja2 3.1 renders it with
// transformers' settings: trim_blocks, lstrip_blocks, loopcontrols, its tojson), whitespace control, error
// messages that name the construct and line, and bounded behaviour on hostile templates.
#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "chat/chat_template.h"
#include "chat/jinja.h"

using vireo::jinja::Error;
using vireo::jinja::Options;
using vireo::jinja::RaisedError;
using vireo::jinja::Template;

namespace {

const char* kCtx = R"({"xs": [1, 2, 3], "d": {"a": 1, "b": [1, 2]}, "n": null, "s": "héllo wörld",
  "m": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]})";

std::string R(const std::string& src, const std::string& ctx = kCtx) {
  Options o;
  o.name = "chat template";
  o.strftime_now = [](const std::string& fmt) { return "DATE(" + fmt + ")"; };
  Template t(src, o);
  return t.render(vireo::json_to_value(nlohmann::ordered_json::parse(ctx)));
}

// The error message of parsing + rendering `src`, or "" when it renders.
std::string E(const std::string& src, Options o = {}) {
  o.name = "chat template";
  try {
    Template t(src, o);
    t.render(vireo::json_to_value(nlohmann::ordered_json::parse(kCtx)));
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(Jinja, TextAndOutput) {
  EXPECT_EQ(R("plain text"), "plain text");
  EXPECT_EQ(R(""), "");
  EXPECT_EQ(R("a{# comment #}b"), "ab");
  EXPECT_EQ(R("x {{ 1 }}\n{{ 2 }}\n  {{ 3 }}"), "x 1\n2\n  3");  // no trim/lstrip for {{ }}
  EXPECT_EQ(R("{% raw %}{{ not evaluated }}{% endraw %}"), "{{ not evaluated }}");
}

TEST(Jinja, Arithmetic) {
  EXPECT_EQ(R("{{ 1 + 2 * 3 }} {{ (1+2)*3 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 2 ** 10 }} "
              "{{ 7 / 2 }} {{ 1.5 * 2 }}"),
            "7 9 3 -4 1 2 1024 3.5 3.0");
  EXPECT_EQ(R(R"({{ "a" ~ 1 ~ none ~ true }} {{ "ab" * 3 }} {{ [1] + [2] }})"), "a1NoneTrue ababab [1, 2]");
  EXPECT_EQ(R("{{ (xs|length - 1) }} {{ xs|length > 2 }} {{ -xs[0] }}"), "2 True -1");
}

TEST(Jinja, NumberFormatting) {
  EXPECT_EQ(R("{{ 1e3 }} {{ 1.5e-7 }} {{ 0.1 + 0.2 }} {{ 1e16 }} {{ 123456789.0 }} {{ 1/3 }} {{ 2.0 ** 0.5 }} "
              "{{ 10 ** 15 * 1.0 }} {{ 1e22 }}"),
            "1000.0 1.5e-07 0.30000000000000004 1e+16 123456789.0 0.3333333333333333 1.4142135623730951 "
            "1000000000000000.0 1e+22");
}

TEST(Jinja, Literals) {
  EXPECT_EQ(R(R"({{ [1, "a", none, true, 1.5, [2], {"k": "v"}] }} {{ {"a": 1} }} {{ "it's" }} {{ ['it\'s'] }})"),
            R"([1, 'a', None, True, 1.5, [2], {'k': 'v'}] {'a': 1} it's ["it's"])");
  EXPECT_EQ(R(R"({{ "tab\there" }} {{ 'q"uote' }} {{ "\u00e9\x41" }} {{ "adj" "acent" }})"),
            "tab\there q\"uote éA adjacent");
  EXPECT_EQ(R("{{ True }} {{ False }} {{ None }} {{ none is none }}"), "True False None True");
}

TEST(Jinja, AccessAndSlices) {
  EXPECT_EQ(R("{{ xs[-1] }} {{ xs[1:] }} {{ xs[::-1] }} {{ s[::-1] }} {{ s[1:3] }} {{ xs[5] }}|{{ xs[:-1] }} "
              "{{ xs[::2] }}"),
            "3 [2, 3] [3, 2, 1] dlröw olléh él |[1, 2] [1, 3]");
  EXPECT_EQ(R(R"({{ d.a }} {{ d["b"][1] }} {{ d.missing }}|{{ d.missing is defined }} {{ d.a is defined }})"),
            "1 2 |False True");
  EXPECT_EQ(R(R"({{ xs.0 }} {{ m[0].role }} {{ m[-1]["content"] }})"), "1 user yo");
  EXPECT_EQ(R(R"({{ n.foo }}|{{ n["x"] }}|{{ xs.foo }})"), "||");
  EXPECT_EQ(R(R"({{ "%s"|length }}{{ s[0] }}{{ s[1] }})"), "2hé");
}

TEST(Jinja, LogicAndComparisons) {
  EXPECT_EQ(R(R"({{ 1 if true else 2 }} {{ 1 if false else 2 }} {{ "x" if false }}| {{ true and "a" }} )"
              R"({{ false or "b" }} {{ not xs }} {{ 2 in xs }} {{ 5 not in xs }} {{ "ll" in s }} {{ "a" in d }})"),
            "1 2 | a b False True True True True");
  EXPECT_EQ(R(R"({{ 1 < 2 }} {{ 1 == 1.0 }} {{ "a" < "b" }} {{ [1,2] == [1,2] }} {{ xs != [1] }} {{ 1 < 2 < 3 }} )"
              R"({{ 3 > 2 > 2 }})"),
            "True True True True True True False");
}

TEST(Jinja, IfElifElse) {
  const char* t = "{% if x == 1 %}one{% elif x == 2 %}two{% else %}other{% endif %}";
  EXPECT_EQ(R(t, R"({"x": 1})"), "one");
  EXPECT_EQ(R(t, R"({"x": 2})"), "two");
  EXPECT_EQ(R(t, R"({"x": 3})"), "other");
  EXPECT_EQ(R(t, "{}"), "other");
}

TEST(Jinja, ForLoops) {
  EXPECT_EQ(R("{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}"), "a=1;b=[1, 2];");
  EXPECT_EQ(R("{% for x in xs if x != 2 %}{{ loop.index }}/{{ loop.length }}:{{ x }}{% if not loop.last %},"
              "{% endif %}{% endfor %}"),
            "1/2:1,2/2:3");
  EXPECT_EQ(R("{% for x in xs %}{{ loop.index0 }}{{ loop.first }}{{ loop.last }}{{ loop.revindex }}"
              "{{ loop.revindex0 }}|{% endfor %}"),
            "0TrueFalse32|1FalseFalse21|2FalseTrue10|");
  EXPECT_EQ(R("{% for x in xs %}{{ loop.previtem }}-{{ loop.nextitem }};{% endfor %}"), "-2;1-3;2-;");
  EXPECT_EQ(R("{% for x in [] %}a{% else %}empty{% endfor %}"), "empty");
  EXPECT_EQ(R("{% for x in xs %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 3 %}{% break %}{% endif %}"
              "{{ x }}{% endfor %}"),
            "1");
  EXPECT_EQ(R("{% for a in xs %}{% for b in [1,2] %}{{ loop.index }}{% endfor %}{{ loop.index }};{% endfor %}"),
            "121;122;123;");
  EXPECT_EQ(R("{% for c in 'ab' %}{{ c }}.{% endfor %}{% for k in d %}{{ k }}{% endfor %}{% for u in undef %}x"
              "{% endfor %}"),
            "a.b.ab");
  EXPECT_EQ(R("{% for x in xs %}{{ loop.cycle('o', 'e') }}{% endfor %}"), "oeo");
}

TEST(Jinja, Scoping) {
  // set inside a loop body does not leak out of it, nor into the next iteration; namespace() is the way out
  EXPECT_EQ(R("{% set x = 1 %}{% for i in xs %}{% set x = i %}{% endfor %}{{ x }}"), "1");
  EXPECT_EQ(R("{% for i in xs %}{% if i==2 %}{% set y = 5 %}{% endif %}{{ y }},{% endfor %}"), ",5,,");
  EXPECT_EQ(R("{% set ns = namespace(c=0) %}{% for x in xs %}{% set ns.c = ns.c + x %}{% endfor %}{{ ns.c }}"),
            "6");
  EXPECT_EQ(R("{% if true %}{% set z = 3 %}{% endif %}{{ z }}"), "3");
  EXPECT_EQ(R("{% set a, b = 1, 2 %}{{ a }}{{ b }} {% set t = (1, 2) %}{{ t[0] }}"), "12 1");
  EXPECT_EQ(R("{% set x %}a{{ 1 }}b{% endset %}[{{ x }}]"), "[a1b]");
  EXPECT_EQ(R("{% set messages = [1] %}{{ messages }}", R"({"messages": [2]})"), "[1]");
}

TEST(Jinja, Macros) {
  EXPECT_EQ(R(R"({% macro f(a, b="B", c=none) %}<{{ a }}{{ b }}{{ c }}>{% endmacro %})"
              R"({{ f(1) }}{{ f(1, 2) }}{{ f(1, c=3) }})"),
            "<1BNone><12None><1B3>");
  EXPECT_EQ(R("{% macro r(n) %}{% if n > 0 %}{{ n }}{{ r(n - 1) }}{% endif %}{% endmacro %}{{ r(3) }}"), "321");
  EXPECT_EQ(R("{% macro g() %}{{ xs|length }}{% endmacro %}{{ g() }}"), "3");  // sees template variables
}

TEST(Jinja, GenerationAndFilterBlocks) {
  EXPECT_EQ(R("{% generation %}gen {{ 1 }}{% endgeneration %}"), "gen 1");
  EXPECT_EQ(R(R"({% filter upper %}abc {{ "d" }}{% endfilter %})"), "ABC D");
}

TEST(Jinja, WhitespaceControl) {
  EXPECT_EQ(R(R"(a  {%- if true -%}  b  {%- endif -%}  c {{- " d " -}} e)"), "abc d e");
  // trim_blocks: the newline after a block tag goes; lstrip_blocks: indentation before a block tag goes
  EXPECT_EQ(R("  {% if true %}\n  yes\n  {% endif %}\nafter\n{# c #}\n  {#- x -#}  z"), "  yes\nafter\nz");
  EXPECT_EQ(R("{% for x in xs %}\n{{ x }}\n{% endfor %}\n"), "1\n2\n3\n");
  // + turns lstrip / trim off for one tag
  EXPECT_EQ(R("{%+ if true %}\n  x{% endif +%}\ny"), "  x\ny");
  Options o;
  o.trim_blocks = o.lstrip_blocks = false;
  EXPECT_EQ(Template("  {% if true %}\nx\n  {% endif %}\n", o).render(vireo::jinja::Value::dict()), "  \nx\n  \n");
}

TEST(Jinja, StringFilters) {
  EXPECT_EQ(R(R"({{ "  x  "|trim }}|{{ "xxhixx"|trim("x") }}|{{ xs|length }}|{{ s|length }}|{{ d|count }})"),
            "x|hi|3|11|2");
  EXPECT_EQ(R(R"({{ 5|string ~ "x" }} {{ "42"|int + 1 }} {{ "3.5"|float }} {{ "x"|int }} {{ 3.7|int }} )"
              R"({{ "3.9"|int }})"),
            "5x 43 3.5 0 3 3");
  EXPECT_EQ(R(R"({{ "Hello World"|lower }} {{ "abc"|upper }} {{ "hello world-foo"|title }} {{ "hELLO"|capitalize }})"),
            "hello world ABC Hello World-Foo Hello");
  EXPECT_EQ(R(R"({{ "aXbXc"|replace("X", "-") }} {{ xs|join(",") }} {{ xs|first }} {{ xs|last }} {{ "abc"|list }} )"
              R"({{ d|list }})"),
            "a-b-c 1,2,3 1 3 ['a', 'b', 'c'] ['a', 'b']");
  EXPECT_EQ(R(R"({{ "a\nb\n\nc"|indent(2) }}|{{ "a\nb"|indent(4, true) }}|{{ "a\nb"|indent("> ") }})"),
            "a\n  b\n\n  c|    a\n    b|a\n> b");
  EXPECT_EQ(R(R"({{ "a b  c"|wordcount }} {{ xs|batch(2)|list }} {{ "<a>"|e }} {{ "x"|safe }})"),
            "3 [[1, 2], [3]] &lt;a&gt; x");
}

TEST(Jinja, DefaultFilter) {
  EXPECT_EQ(R(R"({{ u|default("dflt") }} {{ ""|default("e", true) }} {{ none|default("n") }} {{ u|d("x") }})"),
            "dflt e None x");
}

TEST(Jinja, TojsonFilter) {
  EXPECT_EQ(R(R"({{ xs|tojson }}|{{ d|tojson }}|{{ d|tojson(indent=2) }}|{{ "é\"\n\u0001"|tojson }}|)"
              R"({{ 1.0|tojson }}|{{ n|tojson }})"),
            "[1, 2, 3]|{\"a\": 1, \"b\": [1, 2]}|{\n  \"a\": 1,\n  \"b\": [\n    1,\n    2\n  ]\n}|"
            "\"é\\\"\\n\\u0001\"|1.0|null");
  EXPECT_EQ(R("{{ m|tojson(indent=4) }}"),
            "[\n    {\n        \"role\": \"user\",\n        \"content\": \"hi\"\n    },\n    {\n        \"role\": "
            "\"assistant\",\n        \"content\": \"yo\"\n    }\n]");
  // key order is the input's, not sorted
  EXPECT_EQ(R("{{ o|tojson }} {{ o|tojson(sort_keys=true) }} {{ [] | tojson(indent=2) }}", R"({"o": {"z": 1, "a": {}}})"),
            R"({"z": 1, "a": {}} {"a": {}, "z": 1} [])");
  EXPECT_NE(E("{{ undef|tojson }}").find("undefined"), std::string::npos);
}

TEST(Jinja, SequenceFilters) {
  EXPECT_EQ(R(R"({{ d|items|list|length }} {{ m|selectattr("role", "equalto", "user")|list }} )"
              R"({{ m|rejectattr("role", "eq", "user")|map(attribute="content")|list }})"),
            "2 [{'role': 'user', 'content': 'hi'}] ['yo']");
  EXPECT_EQ(R(R"({{ xs|select("odd")|list }} {{ xs|reject("even")|list }} {{ [1,0,2]|select|list }} )"
              R"({{ [3,1,2,1]|unique|list }} {{ xs|reverse|list }} {{ "abc"|reverse }})"),
            "[1, 3] [1, 3] [1, 2] [3, 1, 2] [3, 2, 1] cba");
  EXPECT_EQ(R(R"({{ [3,1,2]|sort }} {{ ["b","A","c"]|sort }} )"
              R"({{ m|sort(attribute="role")|map(attribute="role")|join(",") }} {{ [3,1,2]|sort(reverse=true) }})"),
            "[1, 2, 3] ['A', 'b', 'c'] assistant,user [3, 2, 1]");
  EXPECT_EQ(R(R"({{ -3|abs }} {{ 2.5|round }} {{ 3.5|round }} {{ 2.567|round(2) }} {{ 7|round }} )"
              R"({{ 2.1|round(method="ceil") }} {{ xs|min }} {{ xs|max }} {{ xs|sum }} {{ [1.5,2]|sum }})"),
            "3 2.0 4.0 2.57 7 3.0 1 3 6 3.5");
  EXPECT_EQ(R(R"({{ [m[0]]|map("tojson")|list }})"), R"(['{"role": "user", "content": "hi"}'])");
  EXPECT_EQ(R(R"({{ m|selectattr("name", "undefined")|list|length }} {{ m|selectattr("role", "defined")|list|length }})"),
            "2 2");
}

TEST(Jinja, Tests) {
  EXPECT_EQ(R("{{ x is defined }} {{ xs is iterable }} {{ d is mapping }} {{ xs is sequence }} {{ s is string }} "
              "{{ 1 is number }} {{ 1 is integer }} {{ 1.0 is float }} {{ true is boolean }} {{ n is none }}"),
            "False True True True True True True True True True");
  EXPECT_EQ(R("{{ 3 is odd }} {{ 4 is even }} {{ 9 is divisibleby 3 }} {{ 9 is divisibleby(4) }} {{ 1 is eq 1 }} "
              "{{ 1 is ne 2 }} {{ 1 is lt 2 }} {{ 1 is gt 2 }} {{ 2 is le 2 }} {{ 2 is ge 3 }} {{ 2 is in xs }} "
              "{{ true is true }} {{ false is false }} {{ 1 is true }}"),
            "True True True False True True True False True False True True True False");
  EXPECT_EQ(R("{{ n is not none }} {{ s is not string }} {{ 'a' is equalto 'a' }} {{ xs is undefined }} "
              "{{ range is callable }} {{ 1 is string }}"),
            "False False True False True False");
}

TEST(Jinja, Methods) {
  EXPECT_EQ(R(R"({{ " a b ".strip() }}|{{ "xxa".lstrip("x") }}|{{ "a\n\n".rstrip("\n") }}|{{ "a,b".split(",") }}|)"
              R"({{ " a  b ".split() }}|{{ "a,b,c".split(",", 1) }})"),
            "a b|a|a|['a', 'b']|['a', 'b']|['a', 'b,c']");
  EXPECT_EQ(R(R"({{ s.startswith("hé") }} {{ s.endswith("x") }} {{ "Ab".lower() }} {{ "a-b".replace("-", "+") }} )"
              R"({{ "hello world".title() }} {{ "abc".capitalize() }} {{ "abcabc".find("c") }} {{ "abcabc".count("b") }})"),
            "True False ab a+b Hello World Abc 2 2");
  EXPECT_EQ(R(R"({{ d.keys()|list }} {{ d.values()|list }} {{ d.get("a") }} {{ d.get("z", 5) }} {{ d.get("z") }})"),
            "['a', 'b'] [1, [1, 2]] 1 5 None");
  // content.split('</think>')[-1].lstrip('\n'), as Qwen3's template does
  EXPECT_EQ(R(R"({{ c.split('</think>')[-1].lstrip('\n') }}|{{ c.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n') }})",
              R"({"c": "<think>\nhmm\n</think>\n\nanswer"})"),
            "answer|hmm");
}

TEST(Jinja, Globals) {
  EXPECT_EQ(R(R"({{ range(3)|list }} {{ range(1, 4)|list }} {{ range(10, 0, -3)|list }} {{ dict(a=1, b="x") }} )"
              R"({{ namespace(a=1).a }})"),
            "[0, 1, 2] [1, 2, 3] [10, 7, 4, 1] {'a': 1, 'b': 'x'} 1");
  EXPECT_EQ(R(R"({{ strftime_now("%d %b %Y") }})"), "DATE(%d %b %Y)");
  // without a hook: the current time
  std::string year = Template("{{ strftime_now('%Y') }}").render(vireo::jinja::Value::dict());
  ASSERT_EQ(year.size(), 4u);
  EXPECT_GE(std::stoi(year), 2024);
}

TEST(Jinja, UndefinedSemantics) {
  EXPECT_EQ(R("[{{ undef }}]{{ undef is defined }}{{ undef|length }}{{ undef ~ 'x' }}{% if undef %}T{% else %}F"
              "{% endif %}"),
            "[]False0xF");
  EXPECT_EQ(E("{{ undef.foo }}"), "chat template line 1: 'undef' is undefined");
  EXPECT_EQ(E("{{ undef + 1 }}"), "chat template line 1: 'undef' is undefined");
}

TEST(Jinja, RaiseException) {
  try {
    R("line one\n{{ raise_exception('Conversation roles must alternate') }}");
    FAIL() << "no exception";
  } catch (const RaisedError& e) {
    EXPECT_STREQ(e.what(), "chat template line 2: Conversation roles must alternate");
  }
}

TEST(Jinja, ErrorsNameConstructAndLine) {
  EXPECT_EQ(E("line1\n\n{{ x | wordwrap }}"), "chat template line 3: unknown filter 'wordwrap'");
  EXPECT_EQ(E("a\n{% frobnicate %}"), "chat template line 2: unknown tag 'frobnicate'");
  EXPECT_EQ(E("{% include 'x' %}"), "chat template line 1: unknown tag 'include'");
  EXPECT_EQ(E("{% for x in xs %}\n{% if x %}\n"), "chat template line 3: unclosed '{% if %}' block (opened at line 2)");
  EXPECT_EQ(E("x\n{% for x in xs %}"), "chat template line 2: unclosed '{% for %}' block (opened at line 2)");
  EXPECT_EQ(E("{{ foo(1) }}"), "chat template line 1: unknown function 'foo'");
  EXPECT_EQ(E("{{ 'a'.frob() }}"), "chat template line 1: unknown method 'frob' on this value");
  EXPECT_EQ(E("\n{{ 1 is frob }}"), "chat template line 2: unknown test 'frob'");
  EXPECT_EQ(E("{{ 1 + }}"), "chat template line 1: unexpected '}}' in expression");
  EXPECT_EQ(E("{{ 'abc }}"), "chat template line 1: unterminated string");
  EXPECT_EQ(E("{% endif %}"), "chat template line 1: unexpected '{% endif %}'");
  EXPECT_EQ(E("{{ 1 }"), "chat template line 1: unexpected '}'");
  EXPECT_EQ(E("{# open"), "chat template line 1: unclosed comment '{#'");
  EXPECT_EQ(E("{% break %}"), "chat template line 1: 'break' outside of a loop");
  EXPECT_EQ(E("{% set x.y = 1 %}"), "chat template line 1: cannot assign attribute 'y' on 'x': not a namespace()");
  EXPECT_EQ(E("{{ 1 // 0 }}"), "chat template line 1: integer division or modulo by zero");
  EXPECT_EQ(E("{{ [1] < 'a' }}"), "chat template line 1: cannot compare list with string");
  EXPECT_EQ(E("{{ 'a' + 1 }}"), "chat template line 1: unsupported operand types for +: 'string' and 'int'");
  EXPECT_EQ(E("{{ 2 ** 62 * 4 }}"), "chat template line 1: integer overflow");
  EXPECT_EQ(E("{{ xs[::0] }}"), "chat template line 1: slice step cannot be zero");
  EXPECT_EQ(E("{% for x in n %}{% endfor %}"), "chat template line 1: 'NoneType' object is not iterable");
}

TEST(Jinja, HostileInputIsBounded) {
  auto quick = [](const std::string& src) {
    auto t0 = std::chrono::steady_clock::now();
    std::string e = E(src);
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_LT(s, 20.0) << src.substr(0, 60);
    return e;
  };
  EXPECT_EQ(quick("{{ " + std::string(100000, '(') + "1" + std::string(100000, ')') + " }}"),
            "chat template line 1: template nested too deeply");
  EXPECT_EQ(quick("{{ " + std::string(100000, '-') + "1 }}"), "chat template line 1: template nested too deeply");
  std::string ifs;
  for (int i = 0; i < 5000; ++i) ifs += "{% if 1 %}";
  EXPECT_EQ(quick(ifs), "chat template line 1: template nested too deeply");
  EXPECT_EQ(quick("{{ " + std::string(50000, '[') + " }}"), "chat template line 1: unclosed '{{'");
  EXPECT_EQ(quick("{% for i in range(10**9) %}{{ i }}{% endfor %}"),
            "chat template line 1: range() of 1000000000 items exceeds the limit of 4194304");
  EXPECT_EQ(quick("{% for i in range(1000000) %}{% for j in range(1000000) %}{% endfor %}{% endfor %}"),
            "chat template line 1: template exceeded the evaluation step limit");
  EXPECT_EQ(quick("{% macro f(n) %}{{ f(n+1) }}{% endmacro %}{{ f(0) }}"),
            "chat template line 1: evaluation nested too deeply (recursive macro?)");
  EXPECT_EQ(quick("{{ 'x' * 10**12 }}"), "chat template line 1: string exceeds the size limit");
  EXPECT_EQ(quick("{% set ns = namespace(s='xxxxxxxxxxxxxxxx') %}{% for i in range(100) %}{% set ns.s = ns.s + ns.s %}"
                  "{% endfor %}"),
            "chat template line 1: string exceeds the size limit");
  EXPECT_EQ(quick("{% set ns = namespace(s=[1]) %}{% for i in range(100) %}{% set ns.s = ns.s + ns.s %}{% endfor %}"),
            "chat template line 1: list exceeds the size limit");
  Options small;
  small.max_output = 1000;
  EXPECT_EQ(E("{% for i in range(2000) %}x{% endfor %}", small), "chat template line 1: output exceeds the size limit");
  EXPECT_EQ(quick("{{ 10**100 }}"), "chat template line 1: integer overflow");
  // garbage never crashes: every prefix of a real template either renders or gives an Error
  const std::string real =
      "{%- for m in messages %}{{- '<|im_start|>' + m.role + '\\n' + m['content'] | trim }}{% if loop.last %}"
      "{{ m|tojson(indent=2) }}{% endif %}{%- endfor %}";
  for (size_t n = 0; n <= real.size(); ++n) (void)E(real.substr(0, n));
}
