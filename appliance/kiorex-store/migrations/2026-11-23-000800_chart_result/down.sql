DROP TABLE chart_result;
