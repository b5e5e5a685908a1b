// PgJDBC (Debian's libpostgresql-jdbc-java: the driver DBeaver, Metabase, SQuirreL and other JDBC
// tools use) against cruscotto's pgwire port: DatabaseMetaData (schemas, tables, columns, keys),
// prepared statements past the driver's server-prepare threshold, types, and the errors. Prints
// one JSON object of what it saw; the Rust test asserts.
//
// argv: jdbc-url key wrong-key partner-key http-url slow-sql mode   (mode: "main" or "cancel")

import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.List;

public class JdbcClient {
    interface Call {
        void run() throws Exception;
    }

    static final List<String> seen = new ArrayList<>();

    static String str(String s) {
        if (s == null) {
            return "null";
        }
        StringBuilder b = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            switch (c) {
                case '"' -> b.append("\\\"");
                case '\\' -> b.append("\\\\");
                case '\n' -> b.append("\\n");
                case '\r' -> b.append("\\r");
                case '\t' -> b.append("\\t");
                default -> {
                    if (c < 0x20) {
                        b.append(String.format("\\u%04x", (int) c));
                    } else {
                        b.append(c);
                    }
                }
            }
        }
        return b.append('"').toString();
    }

    static String list(List<String> values) {
        List<String> quoted = new ArrayList<>();
        for (String v : values) {
            quoted.add(str(v));
        }
        return "[" + String.join(",", quoted) + "]";
    }

    static void put(String key, String json) {
        seen.add(str(key) + ":" + json);
    }

    static String errorOf(Call call) {
        try {
            call.run();
            return "null";
        } catch (SQLException e) {
            return "{\"sqlstate\":" + str(e.getSQLState()) + ",\"message\":" + str(e.getMessage()) + "}";
        } catch (Exception e) {
            return "{\"sqlstate\":null,\"message\":" + str(e.toString()) + "}";
        }
    }

    static List<String> column(ResultSet rs, String... names) throws SQLException {
        List<String> values = new ArrayList<>();
        try (rs) {
            while (rs.next()) {
                List<String> parts = new ArrayList<>();
                for (String name : names) {
                    parts.add(String.valueOf(rs.getString(name)));
                }
                values.add(String.join(":", parts));
            }
        }
        return values;
    }

    static long running(String http) throws Exception {
        HttpResponse<String> r = HttpClient.newHttpClient().send(
                HttpRequest.newBuilder(URI.create(http + "/readyz")).build(),
                HttpResponse.BodyHandlers.ofString());
        java.util.regex.Matcher m =
                java.util.regex.Pattern.compile("\"running_queries\"\\s*:\\s*(\\d+)").matcher(r.body());
        return m.find() ? Long.parseLong(m.group(1)) : 0;
    }

    public static void main(String[] args) throws Exception {
        String url = args[0], key = args[1], wrong = args[2], partner = args[3], http = args[4];
        String slow = args[5], mode = args[6];
        if (mode.equals("main")) {
            try (Connection c = DriverManager.getConnection(url, "analyst", key)) {
                DatabaseMetaData md = c.getMetaData();
                put("product", str(md.getDatabaseProductName() + " " + md.getDatabaseProductVersion()));
                put("schemas", list(column(md.getSchemas(), "TABLE_SCHEM")));
                put("tables", list(column(md.getTables(null, "prova", "%", new String[] {"TABLE"}),
                        "TABLE_NAME", "TABLE_TYPE")));
                put("views", list(column(md.getTables(null, "queries", "tipi%", null),
                        "TABLE_NAME", "TABLE_TYPE")));
                put("columns", list(column(md.getColumns(null, "prova", "tipi", "%"),
                        "COLUMN_NAME", "TYPE_NAME")));
                put("primary_keys", list(column(md.getPrimaryKeys(null, "prova", "tipi"), "COLUMN_NAME")));

                // Past prepareThreshold (5) the driver names a server-side statement and binds
                // parameters in binary.
                List<String> executions = new ArrayList<>();
                try (PreparedStatement ps = c.prepareStatement(
                        "SELECT id, nome FROM prova.tipi WHERE id >= ? AND nome <> ? ORDER BY id")) {
                    for (int i = 0; i < 7; i++) {
                        ps.setLong(1, 2);
                        ps.setString(2, "nessuno");
                        executions.add(String.join(",", column(ps.executeQuery(), "id", "nome")));
                    }
                }
                put("prepared", list(executions));

                try (Statement st = c.createStatement();
                        ResultSet rs = st.executeQuery(
                                "SELECT id, nome, quota, attivo, giorno, istante, importo FROM prova.tipi ORDER BY id")) {
                    rs.next();
                    put("types", list(List.of(
                            String.valueOf(rs.getLong("id")),
                            rs.getString("nome"),
                            String.valueOf(rs.getDouble("quota")),
                            String.valueOf(rs.getBoolean("attivo")),
                            rs.getDate("giorno").toString(),
                            rs.getTimestamp("istante").toString(),
                            String.valueOf(rs.getDouble("importo")),
                            rs.getMetaData().getColumnTypeName(6))));
                }

                try (Statement st = c.createStatement()) {
                    put("refused", errorOf(() -> st.execute("DROP TABLE prova.tipi")));
                    try (ResultSet rs = st.executeQuery("SELECT 1")) {
                        rs.next();
                        put("after_refusal", String.valueOf(rs.getInt(1)));
                    }
                    put("unknown_table", errorOf(() -> st.executeQuery("SELECT * FROM nessuna")));
                    put("timeout", errorOf(() -> st.executeQuery(slow)));
                }
            }
            put("wrong_key", errorOf(() -> DriverManager.getConnection(url, "analyst", wrong).close()));
            put("partner_key", errorOf(() -> DriverManager.getConnection(url, "partner", partner).close()));
        } else {
            try (Connection c = DriverManager.getConnection(url, "analyst", key);
                    Statement st = c.createStatement()) {
                Thread canceller = new Thread(() -> {
                    try {
                        long deadline = System.currentTimeMillis() + 60_000;
                        while (running(http) < 1 && System.currentTimeMillis() < deadline) {
                            Thread.sleep(50);
                        }
                        st.cancel();
                    } catch (Exception e) {
                        throw new RuntimeException(e);
                    }
                });
                canceller.start();
                put("cancelled", errorOf(() -> st.executeQuery(slow)));
                canceller.join();
                try (ResultSet rs = st.executeQuery("SELECT 2")) {
                    rs.next();
                    put("after_cancel", String.valueOf(rs.getInt(1)));
                }
            }
        }
        System.out.println("{" + String.join(",", seen) + "}");
    }
}
